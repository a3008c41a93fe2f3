"""Finding what to ingest: files and directories, JSON web APIs and database queries."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ragtune.errors import SourceError
from ragtune.knowledge.loaders import KIND_BY_SUFFIX, FileLoader, file_loader
from ragtune.knowledge.loaders.remote import sql_source, url_source
from ragtune.knowledge.types import LoadResult, SourceItem

_MB = 1024 * 1024
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def discover_sources(paths: list[str], *, json_text_field: str = "text", sql_query: str | None = None,
                     max_file_mb: float = 200) -> tuple[list[SourceItem], list[SourceError], list[str]]:
    """Turn each path (file, directory, http(s) JSON API, or database URL + `sql_query`) into sources: (the sources,
    the errors, the paths that gave nothing at all because they could not be read: missing, unsupported, unreachable).

    Files are only hashed here and parsed by `SourceItem.load()`; URLs and queries are fetched now.
    Unreadable sources come back as errors next to the good ones: one bad source never stops the batch.
    """
    items: list[SourceItem] = []
    errors: list[SourceError] = []
    unreadable: list[str] = []
    for raw in paths:
        try:
            if raw.lower().startswith(("http://", "https://")):
                items.append(url_source(raw, json_text_field))
            elif _SCHEME.match(raw):
                items.append(sql_source(raw, sql_query, json_text_field))
            else:
                _discover_path(raw, json_text_field, max_file_mb, items, errors)
        except SourceError as exc:
            errors.append(exc)
            unreadable.append(raw)
    return _unique(items), errors, unreadable


def _discover_path(raw: str, text_field: str, max_file_mb: float,
                   items: list[SourceItem], errors: list[SourceError]) -> None:
    path = Path(raw).expanduser()
    if path.is_dir():
        root = path.resolve()
        for file in _walk(root, errors):
            found = file_loader(file.suffix, text_field)
            if found is None:
                continue
            try:
                items.append(_file_item(file, root, *found, max_file_mb))
            except SourceError as exc:
                errors.append(exc)
    elif path.is_file():
        root = path.absolute().parent.resolve()
        found = file_loader(path.suffix, text_field)
        if found is None:
            raise SourceError(path.name, f"unsupported file type '{path.suffix or '(no extension)'}'",
                              f"convert it to one of: {', '.join(KIND_BY_SUFFIX)}")
        items.append(_file_item(root / path.name, root, *found, max_file_mb))
    elif path.exists():
        raise SourceError(raw, "not a regular file or directory", "pass files or directories of documents")
    else:
        raise SourceError(raw, "no such file or directory",
                          f"check the path (relative paths start from {Path.cwd()})")


def _walk(root: Path, errors: list[SourceError]) -> Iterator[Path]:
    """Regular files under root, sorted, skipping hidden files and directories."""
    def report(exc: OSError) -> None:
        where = os.path.relpath(exc.filename, root) if exc.filename else str(root)
        errors.append(SourceError(where, f"cannot list directory ({exc.strerror})", "check its permissions"))

    for directory, subdirs, files in os.walk(root, onerror=report):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            path = Path(directory, name)
            if not name.startswith(".") and path.is_file():
                yield path


def _file_item(path: Path, root: Path, kind: str, loader: FileLoader, max_file_mb: float) -> SourceItem:
    key = path.relative_to(root).as_posix()
    try:
        stat = path.stat()
        size = stat.st_size
        if size > max_file_mb * _MB:
            raise SourceError(key, f"file is {size / _MB:.3g} MB, larger than the limit of {max_file_mb:g} MB",
                              "raise ingest.max_file_mb in ragtune.yaml or split the file")
        fingerprint = _sha256_file(path)
    except OSError as exc:
        raise SourceError(key, f"cannot read file ({exc.strerror or exc})", "check the file's permissions") from exc
    return SourceItem(key=key, kind=kind, fingerprint=fingerprint, load=partial(_load_file, path, key, kind, loader),
                      root=str(root), size_bytes=size, modified_at=stat.st_mtime)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_MB):
            digest.update(block)
    return digest.hexdigest()


def _load_file(path: Path, key: str, kind: str, loader: FileLoader) -> LoadResult:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(key, f"cannot read file ({exc.strerror or exc})",
                          "check that the file still exists and is readable") from exc
    if not data:
        raise SourceError(key, "empty file (0 bytes)", "remove the file or add content to it")
    try:
        return loader(data, key)
    except SourceError:
        raise
    except Exception as exc:  # a parser bug on one odd file must not stop the batch
        raise SourceError(key, f"cannot read {kind} file ({type(exc).__name__}: {exc})",
                          f"check that it is a valid {kind} file, or convert it to text") from exc


def _unique(items: list[SourceItem]) -> list[SourceItem]:
    """Drop repeats of the same source (the same directory or file given twice)."""
    unique: dict[tuple[str, str], SourceItem] = {}
    for item in items:
        unique.setdefault((item.root, item.key), item)
    return list(unique.values())
