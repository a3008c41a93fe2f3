"""Record formats: CSV rows, JSON lists, JSONL lines, JSON API payloads and SQL rows, one document each.

The text comes from the `text_field` field; tabular sources (CSV, SQL) without that column use all
columns as `name: value` lines instead. `id` and `title` fields are used when present.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from ragtune.errors import SourceError
from ragtune.knowledge.loaders.common import cap_warnings, decode_text, guess_title
from ragtune.knowledge.types import LoadResult, RawDocument

_SCALARS = (str, int, float, bool)
_TEXT_FIELD_HINT = "pass --text-field with the name of the field that holds the text"
_RECORDS_HINT = "records must be JSON objects with their text in one field; " + _TEXT_FIELD_HINT


def load_csv(data: bytes, source: str, text_field: str) -> LoadResult:
    """One document per CSV row (the header row names the columns); `part` is the row number."""
    text, warnings = decode_text(data, source)
    csv.field_size_limit(2**31 - 1)  # long text cells are the point of a document CSV
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = [(f"row {n}", n, row) for n, row in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise SourceError(source, f"malformed CSV (line {reader.line_num}: {exc})",
                          "fix the quoting on that line or re-export the CSV") from exc
    return _load_records(rows, source, text_field, warnings, tabular=True)


def load_json(data: bytes, source: str, text_field: str) -> LoadResult:
    """One document per record of a JSON list (or of the single list inside a JSON object)."""
    text, warnings = decode_text(data, source)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(source, f"invalid JSON ({exc})",
                          "fix the JSON, or write one record per line as .jsonl") from exc
    return records_from_payload(payload, source, text_field, warnings)


def load_jsonl(data: bytes, source: str, text_field: str) -> LoadResult:
    """One document per JSON line; bad lines are skipped with a warning. `part` is the id or line number."""
    text, warnings = decode_text(data, source)
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {n}", n, json.loads(line)))
        except json.JSONDecodeError as exc:
            warnings.append(f"line {n}: invalid JSON ({exc.msg} at column {exc.colno}), skipped")
    return _load_records(records, source, text_field, warnings, tabular=False)


def records_from_payload(payload: object, source: str, text_field: str,
                         warnings: list[str] | None = None) -> LoadResult:
    """Documents from parsed JSON: a list of records, an object with one list of records, or one record."""
    if isinstance(payload, dict) and text_field not in payload:
        lists = [value for value in payload.values() if isinstance(value, list)]
        payload = lists[0] if len(lists) == 1 else payload
    records = payload if isinstance(payload, list) else [payload] if isinstance(payload, dict) else None
    if records is None:
        raise SourceError(source, f"expected a list of records, got a JSON {type(payload).__name__}",
                          "point at a JSON list of objects, or an object holding one such list")
    labelled = [(f"record {n}", n, record) for n, record in enumerate(records, start=1)]
    return _load_records(labelled, source, text_field, warnings or [], tabular=False)


def records_from_rows(rows: list[dict], source: str, text_field: str) -> LoadResult:
    """Documents from database rows (column name → value), one per row."""
    labelled = [(f"row {n}", n, row) for n, row in enumerate(rows, start=1)]
    return _load_records(labelled, source, text_field, [], tabular=True)


def _load_records(records: Iterable[tuple[str, int, object]], source: str, text_field: str,
                  warnings: list[str], *, tabular: bool) -> LoadResult:
    documents: list[RawDocument] = []
    parts: set[str] = set()
    for label, position, record in records:
        if not isinstance(record, dict):
            warnings.append(f"{label}: not an object but a JSON {type(record).__name__}, skipped")
            continue
        document = _record_document(record, source, label, position, text_field, tabular)
        if isinstance(document, str):
            warnings.append(document)
            continue
        if document.part in parts:
            warnings.append(f"{label}: duplicate id {document.part!r}; stored as {document.part}#{position}")
            document.part = f"{document.part}#{position}"
        parts.add(document.part)
        documents.append(document)
    if not documents:
        detail = warnings[-1] if warnings else "no records found"
        raise SourceError(source, f"no document could be read ({detail})", _RECORDS_HINT)
    return LoadResult(documents, cap_warnings(warnings))


def _record_document(record: dict, source: str, label: str, position: int, text_field: str,
                     tabular: bool) -> RawDocument | str:
    """A document for one record, or a warning saying why the record was skipped."""
    value = record.get(text_field)
    if tabular and text_field not in record:
        text = "\n".join(f"{name}: {item}" for name, item in record.items()
                         if name is not None and _joinable(item) and str(item).strip())
        metadata = {}
    elif text_field not in record:
        fields = ", ".join(str(name) for name in list(record)[:10])
        return f"{label}: no '{text_field}' field (fields: {fields}); {_TEXT_FIELD_HINT}"
    elif value is None:
        return f"{label}: empty text, skipped"
    elif isinstance(value, str) or (tabular and _joinable(value)):
        text = str(value)
        metadata = {name: item for name, item in record.items()
                    if name not in (text_field, "id", "title") and isinstance(item, _SCALARS)}
    else:
        return f"{label}: '{text_field}' is a {type(value).__name__}, not text, skipped"
    if not text.strip():
        return f"{label}: empty text, skipped"
    ident, title = record.get("id"), record.get("title")
    part = str(ident) if isinstance(ident, _SCALARS) and str(ident).strip() else str(position)
    title = str(title).strip()[:200] if isinstance(title, _SCALARS) and str(title).strip() else guess_title(text)
    return RawDocument(source=source, text=text, title=title, part=part, metadata=metadata)


def _joinable(value: object) -> bool:
    return value is not None and not isinstance(value, (bytes, bytearray, dict, list))
