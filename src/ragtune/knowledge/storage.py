"""Which backend holds a project's knowledge base: the project's SQLite file by default, or a database server named
by `storage.url` (or RAGTUNE_STORE_URL). One table maps URL schemes to backends, so another backend is one module."""

from __future__ import annotations

import os
import re

from ragtune.errors import RagtuneError
from ragtune.workspace import Workspace

STORE_URL_VARIABLE = "RAGTUNE_STORE_URL"
LOCAL = "sqlite"  # storage.url naming the project's own SQLite file, whatever RAGTUNE_STORE_URL says
LOCAL_STORE = {"storage": {"url": LOCAL}}  # the override for projects of ragtune's own (a comparison's)


def _postgres(url: str):
    from ragtune.knowledge.postgres_store import PostgresKnowledgeStore

    return PostgresKnowledgeStore(url)


BACKENDS = {"postgresql": _postgres, "postgres": _postgres}


def store_url(workspace: Workspace) -> str | None:
    """The configured database URL, the environment first; None for the project's SQLite file (also when
    storage.url is `sqlite`: a comparison's projects stay in its folder in a deployment with RAGTUNE_STORE_URL)."""
    configured = workspace.config.storage.url
    if configured == LOCAL:
        return None
    url = os.environ.get(STORE_URL_VARIABLE) or configured
    return None if url == LOCAL else url


def records_location(workspace: Workspace):
    """Where a server records answers, feedback and votes: the knowledge base's database URL, so that every replica
    records into one place, or the project's SQLite file."""
    return store_url(workspace) or workspace.database_path


def open_store(workspace: Workspace):
    """The knowledge store of `workspace`, on the backend its configuration names."""
    url = store_url(workspace)
    if not url:
        from ragtune.knowledge.store import KnowledgeStore

        return KnowledgeStore(workspace.database_path)
    return open_url(url)


def open_url(url: str):
    """The knowledge store at a database URL, on the backend its scheme names."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme not in BACKENDS:
        shown = f"'{scheme}://'" if re.fullmatch(r"[a-z0-9.+-]+", scheme) else "(not a URL)"  # never echo a password
        raise RagtuneError(f"storage.url: unknown database scheme {shown}",
                           f"use one of {', '.join(f'{name}://' for name in BACKENDS)}, or leave storage.url unset "
                           "for the project's SQLite file")
    return BACKENDS[scheme](url)
