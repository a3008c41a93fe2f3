"""Sources that are fetched at discovery: JSON web APIs and SQL queries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ragtune.errors import SourceError
from ragtune.knowledge.loaders.records import records_from_payload, records_from_rows
from ragtune.knowledge.types import SourceItem

_TIMEOUT_S = 30.0


def url_source(url: str, text_field: str) -> SourceItem:
    """Fetch a JSON API (a list of records, or an object holding one) as one source keyed by its URL."""
    try:
        response = httpx.get(url, timeout=_TIMEOUT_S, follow_redirects=True)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(url, f"cannot reach URL ({type(exc).__name__}: {exc})",
                          "check the URL and your network connection") from exc
    if response.status_code >= 400:
        raise SourceError(url, f"HTTP error {response.status_code} {response.reason_phrase}",
                          "check the URL, and that the API needs no login")
    try:
        payload = response.json()
    except ValueError as exc:
        content_type = response.headers.get("content-type", "unknown")
        raise SourceError(url, f"response is not JSON (content-type: {content_type})",
                          "point at an API endpoint that returns JSON records") from exc
    body = response.content
    return SourceItem(key=url, kind="url", fingerprint=hashlib.sha256(body).hexdigest(),
                      load=lambda: records_from_payload(payload, url, text_field), root=url, size_bytes=len(body))


def sql_source(db_url: str, query: str | None, text_field: str) -> SourceItem:
    """Run a SELECT on a database (any SQLAlchemy URL); each row becomes a document."""
    try:
        url = make_url(db_url)
        url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise SourceError(db_url, f"not a supported database URL ({exc})",
                          "use http(s):// for JSON APIs or a SQLAlchemy URL such as sqlite:///docs.db") from exc
    shown = url.render_as_string(hide_password=True)
    if not query or not query.strip():
        raise SourceError(shown, "a database source needs a SQL query",
                          'pass a SELECT whose rows become documents, e.g. "SELECT id, title, body AS text FROM docs"')
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).is_file():
        raise SourceError(shown, f"database file not found: {url.database}",
                          "check the path (sqlite:///relative.db or sqlite:////absolute/path.db)")
    key = f"{shown}#{hashlib.sha1(' '.join(query.split()).encode()).hexdigest()[:8]}"
    rows = _run_query(url, query, key)
    serialised = json.dumps(rows, sort_keys=True, default=str).encode()
    return SourceItem(key=key, kind="sql", fingerprint=hashlib.sha256(serialised).hexdigest(),
                      load=lambda: records_from_rows(rows, key, text_field), root=shown, size_bytes=len(serialised))


def _run_query(url, query: str, key: str) -> list[dict]:
    engine = None
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:  # never committed: a non-SELECT statement is rolled back
            result = connection.exec_driver_sql(query)  # as written: no ":name" bind-parameter parsing
            if not result.returns_rows:
                raise SourceError(key, "the query returns no rows", "use a SELECT statement")
            return [dict(row) for row in result.mappings()]
    except ImportError as exc:
        raise SourceError(key, f"database driver not installed ({exc})",
                          "pip install the Python driver for this database") from exc
    except SQLAlchemyError as exc:
        raise SourceError(key, f"query failed ({getattr(exc, 'orig', None) or exc})",
                          "check the query and the database URL") from exc
    finally:
        if engine is not None:
            engine.dispose()
