"""Two `ragtune serve` processes on one PostgreSQL database, as a team scales out: a document uploaded to one is
found by the other at its next search, both rank alike, an answer recorded by one takes feedback through the other,
and a deletion through either is seen by both. Real packaged models (MiniLM, SmolLM2-135M)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from ragtune.knowledge.storage import STORE_URL_VARIABLE

VOLCANOES = ("Mauna Kea is the tallest volcano on Earth measured from its base on the ocean floor, over 10,000 "
             "metres. Olympus Mons on Mars is the tallest volcano in the solar system.")
COMETS = "Comets are icy bodies. Halley's comet returns to the inner solar system every 76 years."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def replicas(tmp_path, postgres_url):
    """Two servers (each its own project folder and process) on one database: their base URLs."""
    env = {key: value for key, value in os.environ.items() if key != STORE_URL_VARIABLE}
    processes, urls = [], []
    for number in (1, 2):
        port, folder = _free_port(), tmp_path / f"replica{number}"
        folder.mkdir()  # a machine's own folder: its configuration and the lexical index it derives
        log = (tmp_path / f"replica{number}.log").open("w")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "ragtune.cli", "--store", postgres_url, "serve", "--project", str(folder),
             "--port", str(port), "--max-tokens", "8"],
            env=env, stdout=log, stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 180
    for process, url, number in zip(processes, urls, (1, 2)):
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"replica {number} did not start:\n{(tmp_path / f'replica{number}.log').read_text()}")
            time.sleep(0.3)
    yield urls
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def search(url: str, query: str, k: int = 3) -> list[tuple[str, int]]:
    response = httpx.post(f"{url}/v1/search", json={"query": query, "k": k, "mode": "hybrid"}, timeout=60)
    response.raise_for_status()
    return [(hit["source"], hit["chunk_id"]) for hit in response.json()["data"]]


def test_two_server_processes_share_documents_answers_and_feedback(replicas):
    first, second = replicas
    uploaded = httpx.post(f"{first}/v1/documents", timeout=120,
                          files=[("files", ("volcanoes.txt", VOLCANOES.encode())),
                                 ("files", ("comets.txt", COMETS.encode()))])
    assert uploaded.status_code == 200, uploaded.text
    for query, source in (("tallest volcano", "volcanoes.txt"), ("When does Halley's comet return?", "comets.txt")):
        found = search(second, query)  # no restart: the next search of the other process sees them
        assert found[0][0] == source and found == search(first, query)

    reply = httpx.post(f"{first}/v1/chat/completions", timeout=120, json={
        "model": "rag", "max_tokens": 8, "messages": [{"role": "user", "content": "Which volcano is the tallest?"}]})
    assert reply.status_code == 200, reply.text
    rated = httpx.post(f"{second}/v1/feedback", timeout=30,
                       json={"response_id": reply.json()["id"], "rating": "down", "comment": "too short"})
    assert rated.status_code == 200, rated.text  # the answer the first recorded is in the shared log

    removed = httpx.delete(f"{second}/v1/documents/comets.txt", timeout=60)
    assert removed.status_code == 200 and removed.json()["chunks"] >= 1
    for url in replicas:
        assert all(source != "comets.txt" for source, _ in search(url, "When does Halley's comet return?"))
        listed = httpx.get(f"{url}/v1/documents", timeout=30).json()["data"]
        assert [entry["source"] for entry in listed] == ["volcanoes.txt"]
