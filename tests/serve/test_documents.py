"""The documents routes and the Markdown renderer: uploads ingested under safe names, limits that store nothing,
reading and deleting a source, and rendering that lets no markup through."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ragtune.serve.app import create_app
from ragtune.serve.documents import safe_filename, uploads_dir

from serve_helpers import make_state


@pytest.fixture
def client(served_project):
    return TestClient(create_app(make_state(served_project)))


@pytest.mark.parametrize("name, safe", [("../../x.txt", "x.txt"), ("..\\..\\evil.md", "evil.md"),
                                        ("notes <1>.txt", "notes _1_.txt"), (".hidden.txt", "hidden.txt"),
                                        ("..", "upload"), (None, "upload")])
def test_file_names_are_sanitised(name, safe):
    assert safe_filename(name) == safe


def test_upload_ingests_lists_reads_and_deletes(client, served_project, tmp_path):
    files = [("files", ("../../volcanoes.txt", b"Mauna Kea is the tallest volcano on Earth from base to peak.")),
             ("files", ("rivers.md", b"# Rivers\n\nThe Nile is the longest river in Africa."))]
    report = client.post("/v1/documents", files=files)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["files"] == ["volcanoes.txt", "rivers.md"] and len(body["added"]) == 2 and body["chunks"] >= 2
    assert (uploads_dir(served_project) / "volcanoes.txt").is_file()
    assert not (tmp_path / "volcanoes.txt").exists() and not (served_project.workspace.root.parent / "volcanoes.txt"
                                                               ).exists()
    listed = {entry["source"]: entry for entry in client.get("/v1/documents").json()["data"]}
    assert {"volcanoes.txt", "rivers.md", "space/mars.txt"} <= set(listed) and listed["rivers.md"]["chunks"] >= 1
    hits = client.post("/v1/search", json={"query": "longest river in Africa", "k": 1}).json()["data"]
    assert hits[0]["source"] == "rivers.md"

    document = client.get("/v1/documents/rivers.md").json()
    assert "The Nile is the longest river" in document["documents"][0]["text"]
    assert client.get("/v1/documents/space/mars.txt").json()["source"] == "space/mars.txt"

    deleted = client.delete("/v1/documents/rivers.md")
    assert deleted.status_code == 200 and deleted.json()["chunks"] >= 1
    assert "rivers.md" not in {entry["source"] for entry in client.get("/v1/documents").json()["data"]}
    assert not (uploads_dir(served_project) / "rivers.md").exists()
    hits = client.post("/v1/search", json={"query": "longest river in Africa", "k": 3}).json()["data"]
    assert all(hit["source"] != "rivers.md" for hit in hits)
    assert (served_project.workspace.root.parent / "corpus" / "space" / "mars.txt").is_file()  # nothing else went
    assert client.get("/v1/documents/rivers.md").status_code == 404
    assert client.delete("/v1/documents/nothing.txt").json()["error"]["code"] == "document_not_found"


def test_an_upload_over_the_limit_or_of_an_unknown_type_stores_nothing(client, served_project, monkeypatch):
    before = client.get("/v1/documents").json()["data"]
    monkeypatch.setattr(served_project.config.ingest, "max_file_mb", 0.001)
    too_big = client.post("/v1/documents", files=[("files", ("small.txt", b"fine")),
                                                  ("files", ("big.txt", b"x" * 5000))])
    assert too_big.status_code == 413 and "big.txt" in too_big.json()["error"]["message"]
    unknown = client.post("/v1/documents", files=[("files", ("tool.exe", b"MZ"))])
    assert unknown.status_code == 415 and ".pdf" in unknown.json()["error"]["message"]
    assert client.get("/v1/documents").json()["data"] == before
    assert not any(path.is_file() for path in uploads_dir(served_project).rglob("*"))


def test_rendered_markdown_lets_no_markup_or_script_through(client):
    html = client.post("/v1/render", json={"markdown": "**bold** <script>alert(1)</script> <img src=x onerror=a()>"
                                                       "\n\n[link](javascript:alert(1)) | [ok](https://a.example)"}
                       ).json()["html"]
    assert "<strong>bold</strong>" in html and "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "href=\"javascript" not in html and 'href="https://a.example"' in html
