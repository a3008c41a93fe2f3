"""Shared fixtures: the real packaged embedder (small and fast) and small corpora built in tmp dirs."""

from __future__ import annotations

import os
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # shared test helpers such as tiny_models
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from corpus_files import write_corpus  # noqa: E402  (after the path above)


@pytest.fixture(autouse=True)
def embedded_store(monkeypatch):
    """Tests run on the project's SQLite file unless they ask for PostgreSQL, whatever the developer's environment
    says."""
    monkeypatch.delenv("RAGTUNE_STORE_URL", raising=False)


@pytest.fixture(scope="session", autouse=True)
def ragtune_cache(tmp_path_factory) -> Path:
    """One cache of converted checkpoints per test session (converting SmolLM2 once), not the user's."""
    cache = tmp_path_factory.getbasetemp() / "ragtune-cache"
    os.environ["RAGTUNE_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def embedder():
    from ragtune.knowledge.embedder import Embedder

    return Embedder("minilm-l6")


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def project(tmp_path, embedder, monkeypatch):
    """A Project in a tmp dir that reuses the session's embedder."""
    from ragtune.knowledge.knowledge_base import KnowledgeBase
    from ragtune.project import Project

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    proj = Project(tmp_path / "project")
    yield proj
    proj.close()


@pytest.fixture(scope="session")
def loopback():
    """`start(handler_class) -> "http://127.0.0.1:PORT"`: HTTP servers on loopback only, stopped after the session."""
    servers = []

    def start(handler) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL with pgvector on a free local port, for the whole session."""
    import tempfile

    from postgres_server import start_postgres

    server = start_postgres(Path(tempfile.mkdtemp(prefix="ragtune-postgres-")))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres, request):
    """The URL of a new, empty database on the session's PostgreSQL."""
    import re
    import uuid

    return postgres.create_database(re.sub(r"\W", "_", request.node.name.lower())[:30] + f"_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's chromium and chromium-driver, installed by .ci/run) shared by the page tests;
    `browser.set_window_size(w, h)` per test."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield session
    session.quit()
