"""The command contract scripts depend on: JSON shapes, --queries batch search, errors with exit code 1."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


@pytest.fixture
def ingested(project, corpus):
    """A project (sharing the session's embedder) with the small corpus ingested, and its directory."""
    result = runner.invoke(app, ["ingest", str(corpus), "--project", str(project.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    return project.workspace.root, json.loads(result.stdout)


def test_ingest_json_report(ingested, corpus):
    root, report = ingested
    assert sorted(report["added"]) == ["animals/cats.md", "animals/dogs.txt", "space/mars.txt", "space/moon.html"]
    again = runner.invoke(app, ["ingest", str(corpus), "--project", str(root)])
    summary = " ".join(again.stdout.split())
    assert again.exit_code == 0 and "unchanged 4" in summary
    assert "0 documents and 0 chunks stored; the knowledge base holds 4 documents and" in summary
    (corpus / "space" / "mars.txt").unlink()
    hinted = " ".join(runner.invoke(app, ["ingest", str(corpus), "--project", str(root)]).stdout.split())
    assert "hint: still in the knowledge base, gone from the given directories: space/mars.txt; ingest again with " \
           "--prune to remove it" in hinted


def test_ingest_fails_for_a_script_when_a_path_given_cannot_be_read_and_keeps_what_it_could(project, corpus,
                                                                                           tmp_path):
    root, typo = str(project.workspace.root), str(tmp_path / "typo")
    result = runner.invoke(app, ["ingest", str(corpus), typo, "--project", root, "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["unreadable_paths"] == [typo] and len(report["added"]) == 4
    assert project.kb.store.counts()["sources"] == 4
    broken = tmp_path / "papers"
    broken.mkdir()
    (broken / "broken.pdf").write_bytes(b"not a pdf")
    only_rejected = runner.invoke(app, ["ingest", str(broken), "--project", root])
    assert only_rejected.exit_code == 1 and "rejected" in only_rejected.stdout
    (broken / "notes.txt").write_text("Quarterly notes: the new office opens in March.", encoding="utf-8")
    one_rejected_among_good = runner.invoke(app, ["ingest", str(broken), "--project", root])
    assert one_rejected_among_good.exit_code == 0 and "added 1" in one_rejected_among_good.stdout


def test_commands_that_read_a_project_refuse_a_directory_that_holds_none(tmp_path):
    typo = tmp_path / "typo"
    readers = (["search", "x"], ["ask", "x"], ["status"], ["health"], ["data", "synthesize", "--docs", "kb"],
               ["data", "prepare", "--train", "kb", "--objective", "cpt"], ["finetune", "--train", "kb", "--objective",
                                                                            "cpt"])
    for command in readers:
        result = runner.invoke(app, [*command, "--project", str(typo)])
        message = " ".join(result.stderr.split())  # as wrapped to the terminal's width
        assert result.exit_code == 1 and "is not a ragtune project" in message and "ragtune ingest DOCS" in message
    arena = runner.invoke(app, ["arena", "--project", str(typo), "report"])
    assert arena.exit_code == 1 and "--from-compare DIR" in " ".join(arena.stderr.split())
    migrate = runner.invoke(app, ["store", "migrate", "--to", "postgresql://x@127.0.0.1:1/db", "--project", str(typo)])
    assert migrate.exit_code == 1 and "has no SQLite knowledge base to migrate" in " ".join(migrate.stderr.split())
    assert not typo.exists()  # nothing was created there


def test_search_and_ask_refuse_an_empty_knowledge_base(project):
    root = str(project.workspace.root)
    search = runner.invoke(app, ["search", "x", "--project", root])
    assert search.exit_code == 1 and "holds no documents yet" in " ".join(search.stderr.split())
    ask = runner.invoke(app, ["ask", "x", "--project", root])
    message = " ".join(ask.stderr.split())
    assert ask.exit_code == 1 and "holds no documents yet" in message and "--k 0" in message


def test_ask_decodes_as_the_chat_server_does_unless_told(ingested, monkeypatch):
    from ragtune.project import Project
    from ragtune.rag import Answer

    asked = []
    monkeypatch.setattr(Project, "ask", lambda self, question, **options: asked.append(options) or Answer(
        "Mars.", [], [], {"completion_tokens": 1, "tokens_per_second": 1.0, "retrieval_ms": 1.0, "total_s": 0.1}))
    root = str(ingested[0])
    assert runner.invoke(app, ["ask", "Tallest volcano?", "--project", root]).exit_code == 0
    assert runner.invoke(app, ["ask", "Tallest volcano?", "--repetition-penalty", "1", "--project", root,
                               "--json"]).exit_code == 0
    assert [options["repetition_penalty"] for options in asked] == [None, 1.0]  # None: the engine's chat default


def test_search_json_hits(ingested):
    root, _ = ingested
    result = runner.invoke(app, ["search", "tallest volcano", "--k", "2", "--mode", "lexical", "--project",
                                 str(root), "--json"])
    hits = json.loads(result.stdout)
    assert len(hits) <= 2 and set(hits[0]) == {"source", "chunk_id", "score", "text"}
    assert hits[0]["source"] == "space/mars.txt"


def test_search_queries_file(ingested, tmp_path):
    root, _ = ingested
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "query": "cats taurine"}\n{"id": 2, "query": "Armstrong Moon"}\n')
    result = runner.invoke(app, ["search", "--queries", str(queries), "--k", "1", "--project", str(root)])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["a", 2]
    assert lines[0]["hits"][0]["source"] == "animals/cats.md"
    assert lines[1]["hits"][0]["source"] == "space/moon.html"


def test_malformed_queries_file_names_the_line(ingested, tmp_path):
    root, _ = ingested
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "query": "cats"}\n{oops\n')
    result = runner.invoke(app, ["search", "--queries", str(queries), "--project", str(root)])
    assert result.exit_code == 1
    assert "q.jsonl:2" in result.stderr and "hint" in result.stderr


def test_status_counts(ingested):
    root, _ = ingested
    status = json.loads(runner.invoke(app, ["status", "--project", str(root), "--json"]).stdout)
    assert status["sources"] == 4 and status["chunks"] >= 4
    assert status["vector_index"]["vectors"] == status["chunks"]
    assert status["models"]["embedder"] == "minilm-l6"
    assert isinstance(status["last_ingest"]["finished_at"], float)  # for scripts; people read a date
    table = re.sub(r"[\s│]+", "", runner.invoke(app, ["status", "--project", str(root)]).stdout)  # cells unwrapped
    assert re.search(r'"finished_at":"20\d\d-\d\d-\d\d\d\d:\d\d:\d\d"', table)  # date and time, spaces gone


def test_unknown_mode_is_a_clear_error(ingested):
    root, _ = ingested
    result = runner.invoke(app, ["search", "x", "--mode", "fuzzy", "--project", str(root)])
    assert result.exit_code == 1 and "unknown mode" in result.stderr


def test_models_lists_packaged_models():
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    names = {row["name"]: row for row in rows}
    assert names["smollm2-135m"]["available"] and names["minilm-l6"]["available"]
    assert "gemma3-270m" in names
