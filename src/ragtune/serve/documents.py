"""The documents routes: upload (incremental ingest), list, read (for the citation viewer) and delete. Uploaded
files live in the project's `uploads/` folder under sanitised names; nothing outside it is ever written."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, File, UploadFile

from ragtune.knowledge.loaders import KIND_BY_SUFFIX, file_loader

MAX_UPLOAD_FILES = 20
MB = 1024 ** 2
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")


def safe_filename(name: str | None) -> str:
    """The file's own name (no folders, no `..`), with only letters, digits, `._ -`; never empty or hidden."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).strip(" .")
    return cleaned[-120:].lstrip(" .") or "upload"


def uploads_dir(project) -> Path:
    return project.workspace.root / "uploads"


def documents_router(state, api_error) -> APIRouter:
    """The /documents routes over `state.project`; `api_error(status, message, code)` builds the errors."""
    router = APIRouter()
    project = state.project

    @router.post("/documents")
    def upload(files: list[UploadFile] = File(...)) -> dict:
        if len(files) > MAX_UPLOAD_FILES:
            raise api_error(400, f"at most {MAX_UPLOAD_FILES} files per upload", "too_many_files")
        limit_mb = project.config.ingest.max_file_mb
        names = [safe_filename(upload.filename) for upload in files]
        if len(set(names)) != len(names):
            raise api_error(400, "two files of this upload have the same name", "duplicate_file_names")
        for upload, name in zip(files, names):
            if file_loader(Path(name).suffix, "text") is None:
                raise api_error(415, f"{upload.filename}: unsupported file type; supported: "
                                f"{', '.join(KIND_BY_SUFFIX)}", "unsupported_file_type")
        target = uploads_dir(project)
        staging = target / ".incoming" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            for upload, name in zip(files, names):
                if _copy_bounded(upload, staging / name, limit_mb * MB) is None:
                    raise api_error(413, f"{upload.filename} is over ingest.max_file_mb ({limit_mb:g} MB); nothing "
                                    "of this upload was stored", "file_too_large")
            for name in names:  # every file passed: only now do they enter the project
                (staging / name).replace(target / name)
            with project.retriever.lock:
                report = project.ingest([str(target / name) for name in names])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for rejected in report.rejected:  # not in the knowledge base: not kept in the uploads either
            if rejected["source"] in names:
                (target / rejected["source"]).unlink(missing_ok=True)
        return {"files": names, **report.to_dict()}

    @router.get("/documents")
    def listing() -> dict:
        with project.retriever.lock:
            return {"object": "list", "data": project.kb.store.source_list()}

    @router.get("/documents/{source:path}")
    def read(source: str, root: str | None = None) -> dict:
        with project.retriever.lock:
            found = _one_source(project, source, root, api_error)
            return {**found, "documents": project.kb.store.source_documents(found["root"], found["source"])}

    @router.delete("/documents/{source:path}")
    def delete(source: str, root: str | None = None) -> dict:
        with project.retriever.lock:
            found = _one_source(project, source, root, api_error)
            chunks = project.kb.delete_source(found["root"], found["source"])
        uploaded = uploads_dir(project) / found["source"]
        if Path(found["root"]) == uploads_dir(project).resolve() and uploaded.is_file():
            uploaded.unlink()  # else the next ingest of the uploads folder would bring it back
        return {"deleted": found["source"], "root": found["root"], "chunks": chunks}

    return router


def _one_source(project, source: str, root: str | None, api_error) -> dict:
    matches = [entry for entry in project.kb.store.source_list()
               if entry["source"] == source and root in (None, entry["root"])]
    if not matches:
        raise api_error(404, f"no document '{source}' in this project", "document_not_found")
    if len(matches) > 1:
        raise api_error(409, f"'{source}' exists under several roots ({', '.join(m['root'] for m in matches)}); "
                        "pass ?root=... to choose", "ambiguous_document")
    return matches[0]


def _copy_bounded(upload: UploadFile, destination: Path, limit_bytes: float) -> int | None:
    """Copy the upload to `destination`; None (and nothing left there) once it passes `limit_bytes`."""
    size = 0
    with destination.open("wb") as out:
        while chunk := upload.file.read(MB):
            size += len(chunk)
            if size > limit_bytes:
                break
            out.write(chunk)
    if size > limit_bytes:
        destination.unlink()
        return None
    return size
