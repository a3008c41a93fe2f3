"""Plain text and markdown (kept as-is: `#` heading lines are used by the chunker)."""

from __future__ import annotations

from ragtune.knowledge.loaders.common import decode_text, guess_title
from ragtune.knowledge.types import LoadResult, RawDocument


def load_text(data: bytes, source: str) -> LoadResult:
    """One document holding the whole file."""
    text, warnings = decode_text(data, source)
    return LoadResult([RawDocument(source=source, text=text, title=guess_title(text))], warnings)
