"""PDF files: the text of each page, pages separated by blank lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pypdf import PdfReader

from ragtune.errors import SourceError
from ragtune.knowledge.loaders.common import cap_warnings, guess_title
from ragtune.knowledge.types import LoadResult, RawDocument

_REEXPORT = "re-export the PDF or convert it to text"


def load_pdf(data: bytes, source: str) -> LoadResult:
    """One document for the whole PDF; metadata records the page count; pypdf's complaints become warnings."""
    try:
        with _pypdf_warnings() as warnings:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise SourceError(source, "PDF is password-protected", "save an unprotected copy of the PDF")
            pages = [page.extract_text() or "" for page in reader.pages]
            meta_title = reader.metadata.title if reader.metadata else None
    except SourceError:
        raise
    except Exception as exc:  # pypdf raises many exception types on damaged files
        raise SourceError(source, f"cannot read PDF ({type(exc).__name__}: {exc})", _REEXPORT) from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise SourceError(source, f"empty: no text could be extracted from {len(pages)} page(s) (scanned images?)",
                          "run OCR on the PDF or convert it to text")
    title = meta_title.strip() if isinstance(meta_title, str) and meta_title.strip() else guess_title(text)
    document = RawDocument(source=source, text=text, title=title, metadata={"pages": len(pages)})
    return LoadResult([document], cap_warnings(list(dict.fromkeys(warnings))))


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    """Collect what pypdf logs (instead of printing it without the file's name)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(f"pypdf: {record.getMessage()}")
    logger = logging.getLogger("pypdf")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
