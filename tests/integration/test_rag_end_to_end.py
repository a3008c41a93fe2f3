"""End to end on the real packaged models: the bundled corpus, MiniLM retrieval and SmolLM2 answers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.demo import demo_corpus_dir, demo_questions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    from ragtune.project import Project

    project = Project(tmp_path_factory.mktemp("demo"), {"generation": {"max_new_tokens": 48}})
    report = project.ingest([str(demo_corpus_dir())])
    assert len(report.added) == 12 and report.rejected == []
    yield project
    project.close()


def test_retrieval_finds_the_gold_article(demo_project):
    questions = demo_questions()[:40]
    rankings = demo_project.search_batch([q["question"] for q in questions], k=5)
    found = sum(any(hit.source == q["source"] for hit in hits) for q, hits in zip(questions, rankings))
    assert found / len(questions) >= 0.8


def test_ask_answers_with_citations_and_timings(demo_project):
    row = demo_questions()[0]
    streamed: list[str] = []
    answer = demo_project.ask(row["question"], on_text=streamed.append)
    assert answer.answer and "".join(streamed).strip() == answer.answer
    assert answer.passages and all(p.source.endswith(".txt") for p in answer.passages)
    assert answer.timings["completion_tokens"] > 0 and answer.timings["tokens_per_second"] > 0
    for citation in answer.citations:
        assert citation["source"] == answer.passages[citation["number"] - 1].source


def test_closed_book_uses_no_passages(demo_project):
    answer = demo_project.ask(demo_questions()[0]["question"], k=0)
    assert answer.passages == [] and answer.citations == [] and answer.answer


def test_cli_ask_json_contract(demo_project):
    result = CliRunner().invoke(app, ["ask", "What is the main cause of HIV-1 infection in children?", "--k", "3",
                                      "--project", str(demo_project.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"answer", "citations", "timings"}
    assert all(set(c) >= {"source", "chunk_id", "text"} for c in data["citations"])
