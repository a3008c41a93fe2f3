"""Format loaders: each turns a file's bytes into a LoadResult, or raises SourceError."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ragtune.knowledge.loaders.html import load_html
from ragtune.knowledge.loaders.pdf import load_pdf
from ragtune.knowledge.loaders.records import load_csv, load_json, load_jsonl
from ragtune.knowledge.loaders.text import load_text
from ragtune.knowledge.loaders.word import load_docx
from ragtune.knowledge.types import LoadResult

FileLoader = Callable[[bytes, str], LoadResult]  # (file bytes, source key) -> documents

KIND_BY_SUFFIX = {".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
                  ".pdf": "pdf", ".docx": "docx", ".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
_LOADERS = {"txt": load_text, "md": load_text, "html": load_html, "pdf": load_pdf, "docx": load_docx}
_RECORD_LOADERS = {"csv": load_csv, "json": load_json, "jsonl": load_jsonl}


def file_loader(suffix: str, text_field: str) -> tuple[str, FileLoader] | None:
    """The (kind, loader) for a file extension such as ".pdf", or None when the format is unsupported."""
    kind = KIND_BY_SUFFIX.get(suffix.lower())
    if kind is None:
        return None
    if kind in _RECORD_LOADERS:
        return kind, partial(_RECORD_LOADERS[kind], text_field=text_field)
    return kind, _LOADERS[kind]
