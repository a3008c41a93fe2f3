"""Data types shared by the knowledge-base stages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

from ragtune.errors import RagtuneError

METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MetadataValue = str | int | float | bool


@dataclass
class RawDocument:
    """Text extracted from a source, before cleaning and chunking.

    `source` is the key of the source it came from; `part` distinguishes several documents in one
    source (a JSONL line, a CSV row, an API record, a SQL row) and is "" for a single-document source.
    """

    source: str
    text: str
    title: str | None = None
    part: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass
class LoadResult:
    """What a loader got out of one source: its documents and non-fatal warnings (e.g. a bad JSONL line)."""

    documents: list[RawDocument]
    warnings: list[str] = field(default_factory=list)


@dataclass
class SourceItem:
    """One unit of incremental ingest.

    `key` identifies it stably across runs (path relative to the ingested root, a URL, a database query);
    `fingerprint` changes whenever its content changes; `load()` extracts its documents and raises
    `SourceError` with an actionable message when the source cannot be read.
    """

    key: str
    kind: str
    fingerprint: str
    load: Callable[[], LoadResult]
    root: str = ""
    size_bytes: int = 0
    modified_at: float | None = None  # when the origin last changed it (a file's time), if it says


@dataclass
class Chunk:
    """A retrievable passage of a document."""

    text: str
    ordinal: int
    start_char: int
    end_char: int
    token_count: int
    heading: str | None = None


@dataclass
class Hit:
    """A retrieved chunk with its score."""

    chunk_id: int
    source: str
    text: str
    score: float
    document_id: int = 0
    title: str | None = None
    heading: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "chunk_id": self.chunk_id, "score": round(float(self.score), 6),
                "text": self.text}


@dataclass
class ChunkFilter:
    """Which chunks a search may return, declared rather than listed: sources whose key matches a glob (`*` any text,
    `?` one character), and documents whose metadata holds every given key with the given value (a string, number
    or boolean, compared as JSON values). Each backend executes it itself, in its own query language."""

    source_glob: str | None = None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self):
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not METADATA_KEY.match(key):
                raise RagtuneError(f"metadata filter: {key!r} is not a metadata key",
                                   "keys are 1-64 letters, digits, '_', '.' or '-'")
            if not isinstance(value, (str, int, float, bool)):
                raise RagtuneError(f"metadata filter {key}: {value!r} is not a string, number or boolean",
                                   "filter on one scalar value per key, e.g. department=HR or year=2024")
            if isinstance(value, float) and not math.isfinite(value) or \
                    isinstance(value, int) and not -2**63 <= value < 2**63:
                raise RagtuneError(f"metadata filter {key}: {value!r} is not a number a document can hold",
                                   "use a finite number within 64 bits")

    def __bool__(self) -> bool:
        return bool(self.source_glob or self.metadata)


class Selection:
    """A filter bound to the store that executes it. Indexes kept beside the store (numpy, usearch, bm25s) read its
    chunk ids, asked of the store once; an index inside the database (pgvector) runs `where` in its own query and
    never needs them."""

    def __init__(self, where: ChunkFilter, store):
        self.where, self._store = where, store

    @cached_property
    def ids(self) -> np.ndarray:
        return self._store.chunk_ids_matching(self.where)


def allowed_ids(allowed: np.ndarray | Selection | None) -> np.ndarray | None:
    """The chunk ids an index may return: those listed, those a selection matches, or all (None)."""
    return allowed.ids if isinstance(allowed, Selection) else allowed
