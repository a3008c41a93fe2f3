"""The knowledge-base tests run against both store backends: the project's SQLite file and a real PostgreSQL with
pgvector (started by the tests themselves, see tests/postgres_server.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request, tmp_path, embedder, monkeypatch):
    """A Project in a tmp dir that reuses the session's embedder, on each store backend."""
    from ragtune.knowledge.knowledge_base import KnowledgeBase
    from ragtune.knowledge.storage import STORE_URL_VARIABLE
    from ragtune.project import Project

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    if request.param == "postgresql":
        monkeypatch.setenv(STORE_URL_VARIABLE, request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv(STORE_URL_VARIABLE, raising=False)
    opened = Project(tmp_path / "project")
    assert opened.kb.store.backend == request.param
    yield opened
    opened.close()
