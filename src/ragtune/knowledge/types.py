"""Data types shared by the knowledge-base stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


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
