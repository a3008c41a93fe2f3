"""Word .docx files: paragraphs and tables in document order; `Heading N` styles become `#` lines."""

from __future__ import annotations

import io
import re

import docx
from docx.table import Table

from ragtune.errors import SourceError
from ragtune.knowledge.loaders.common import guess_title
from ragtune.knowledge.types import LoadResult, RawDocument

_HEADING_STYLE = re.compile(r"^Heading (\d)$")


def load_docx(data: bytes, source: str) -> LoadResult:
    """One document for the whole file; the title is the core-properties title, else the first heading."""
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [_block_text(block) for block in document.iter_inner_content()]
        core_title = document.core_properties.title
    except Exception as exc:  # python-docx / zipfile / lxml errors on damaged files
        raise SourceError(source, f"cannot read Word document ({type(exc).__name__}: {exc})",
                          "open and re-save it as .docx, or convert it to text") from exc
    text = "\n\n".join(block for block in blocks if block)
    if not text:
        raise SourceError(source, "empty (no text in the document)", "remove the file or add content to it")
    title = core_title.strip() if core_title and core_title.strip() else guess_title(text)
    return LoadResult([RawDocument(source=source, text=text, title=title)])


def _block_text(block) -> str:
    if isinstance(block, Table):
        return "\n".join(_row_text(row) for row in block.rows).strip()
    text = block.text.strip()
    style = block.style.name if block.style is not None else ""
    match = _HEADING_STYLE.match(style)
    if text and match:
        return f"{'#' * min(int(match.group(1)), 6)} {text}"
    if text and style == "Title":
        return f"# {text}"
    return text


def _row_text(row) -> str:
    cells: list[str] = []
    for cell in row.cells:  # merged cells repeat; keep each text once per row
        text = cell.text.strip()
        if text and text not in cells:
            cells.append(text)
    return " | ".join(cells)
