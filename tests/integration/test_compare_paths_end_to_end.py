"""The comparison's less travelled paths on the real packaged models: multiple-choice questions through `eval` and
`compare`, continued pre-training from the knowledge base, and a knowledge update (`--update-split`) whose
held-back documents stay out of the first round and are what the new questions ask about."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.demo import demo_corpus_dir, demo_questions, demo_questions_file

pytestmark = pytest.mark.integration


def invoke(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("paths") / "project"
    root.mkdir()
    (root / "ragtune.yaml").write_text("generation:\n  max_new_tokens: 16\n", encoding="utf-8")  # answers: short
    invoke("ingest", str(demo_corpus_dir()), "--project", str(root))
    return root


def multiple_choice_file(path: Path, count: int = 24) -> Path:
    """Bundled questions with four choices each: the answer and three other questions' answers, in seeded order."""
    rng = random.Random(3)
    rows = [row for row in demo_questions() if len(row["answer"].split()) <= 6][:count + 3]
    lines = []
    for i, row in enumerate(rows[:count]):
        choices = [row["answer"], *(other["answer"] for other in rows[i + 1:i + 4])]
        rng.shuffle(choices)
        lines.append({"id": row["id"], "question": row["question"], "answer": row["answer"], "choices": choices,
                      "source": row["source"]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_multiple_choice_questions_are_scored_by_likelihood_in_eval_and_compare(project, tmp_path):
    from ragtune.evaluation.metrics import multiple_choice_correct
    from ragtune.models.loading import load_generator
    from ragtune.prompts import build_messages

    questions = multiple_choice_file(tmp_path / "mc.jsonl")
    few = tmp_path / "mc-8.jsonl"
    few.write_text("".join(questions.read_text().splitlines(keepends=True)[:8]), encoding="utf-8")
    base = invoke("eval", "--test", str(few), "--strategy", "base", "--project", str(project))
    assert 0 <= base["metrics"]["mc_accuracy"]["value"] <= 1
    scores = [row["scores"]["mc_accuracy"] for row in base["per_question"]]
    assert len(scores) == 8 and set(scores) <= {0.0, 1.0}
    # The stored verdict is the real model's: the choice it gives the highest log-likelihood, closed book.
    engine = load_generator("smollm2-135m")
    for row in base["per_question"][:3]:
        logprobs = engine.score_continuations(build_messages(row["question"], []), row["choices"])
        assert row["scores"]["mc_accuracy"] == float(multiple_choice_correct(logprobs, row["choices"],
                                                                             row["reference"]))
    rag = invoke("eval", "--test", str(few), "--strategy", "rag", "--k", "2", "--project", str(project))
    assert {"mc_accuracy", "recall_at_k"} <= set(rag["metrics"])

    results = invoke("compare", "--docs", str(demo_corpus_dir()), "--train", str(questions), "--strategies",
                     "base,rag", "--quick", "--out", str(tmp_path / "compare"))
    assert results["metric_choice"]["answer_kind"] == "choice"
    assert results["metric_choice"]["metric"] == "mc_accuracy"
    for entry in results["strategies"].values():
        assert 0 <= entry["metrics"]["mc_accuracy"]["value"] <= 1
    assert all(test["metric"] == "mc_accuracy" for test in results["significance"])


def test_continued_pretraining_reads_the_knowledge_base(project, tmp_path):
    import sqlite3

    run = tmp_path / "cpt"
    printed = invoke("finetune", "--objective", "cpt", "--train", "kb", "--method", "lora", "--max-steps", "2",
                     "--batch-size", "2", "--max-seq-length", "128", "--project", str(project), "--out", str(run))
    assert printed["run_dir"] == str(run)
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "finished" and metadata["objective"] == "cpt" and metadata["steps"] == 2
    rows = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    with sqlite3.connect(project / ".ragtune" / "knowledge.sqlite") as db:
        stored = [text for (text,) in db.execute("SELECT text FROM documents")]
    assert rows and all(any(row["text"][:200] in document for document in stored) for row in rows[:20])
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2


def test_a_knowledge_update_holds_documents_back_and_asks_about_them(tmp_path):
    out = tmp_path / "update"
    results = invoke("compare", "--docs", str(demo_corpus_dir()), "--train", str(demo_questions_file()),
                     "--strategies", "base,rag,ft", "--quick", "--update-split", "0.3", "--out", str(out))
    update = results["knowledge_update"]
    assert update["new_documents"] >= 1 and update["new_questions"] >= 1 and update["old_questions"] >= 1

    split = json.loads(next((out / "stages").glob("questions.json")).read_text())
    held_back = {Path(path).name for path in split["new_documents"]}
    kept = {Path(path).name for path in split["documents"]}
    assert held_back and not held_back & kept
    new_rows = [json.loads(line) for line in Path(split["test_new"]).read_text().splitlines()]
    old_rows = [json.loads(line) for line in Path(split["test"]).read_text().splitlines()]
    assert new_rows and all(row["source"] in held_back for row in new_rows)  # the new questions ask about them
    assert all(row["source"] not in held_back for row in old_rows)
    # The first round never saw them: no retrieved passage comes from a held-back document.
    first_round = [answer for row in results["per_question"] for name, answer in row["answers"].items()
                   if name == "rag"]
    assert first_round and all(passage["source"] not in held_back for answer in first_round
                               for passage in answer["passages"])
    rag = update["strategies"]["rag"]
    assert rag["new"]["recall_at_k"] > 0  # after the incremental ingest, retrieval finds the new documents
    assert "ingest" in rag["how"] and "training" in update["strategies"]["ft"]["how"]


def test_synthesize_writes_checked_questions_with_the_packaged_model(project, tmp_path):
    import sqlite3

    out = tmp_path / "synthetic" / "questions.jsonl"
    report = invoke("data", "synthesize", "--n", "12", "--project", str(project), "--out", str(out))
    assert report["model"] == "smollm2-135m" and report["planned"] == 12
    assert report["kept"] + sum(report["rejected"].values()) == 12 and report["items_per_minute"] > 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == report["kept"] >= 1, report["rejected"]
    with sqlite3.connect(project / ".ragtune" / "knowledge.sqlite") as db:
        chunks = dict(db.execute("SELECT id, text FROM chunks"))
    from ragtune.project import Project

    reopened = Project(project)
    try:
        for row in kept:  # extractive answers, questions that find their own chunk
            assert chunks[row["chunk_id"]][row["answer_start"]:row["answer_end"]] == row["answer"]
            assert row["question"].endswith("?")
            hits = reopened.retriever.search_many([row["question"]], 5)[0]
            assert row["chunk_id"] in {hit.chunk_id for hit in hits}
    finally:
        reopened.close()
    assert (out.parent / "questions.report.md").read_text().startswith("# Synthesized questions")


def test_compare_on_documents_alone_synthesizes_its_questions(tmp_path):
    results = invoke("compare", "--docs", str(demo_corpus_dir()), "--strategies", "base,rag", "--quick",
                     "--synthesize", "30", "--out", str(tmp_path / "docs-only"))
    synthetic = results["test_set"]["synthetic"]
    assert synthetic["model"] == "smollm2-135m" and synthetic["planned"] == 30
    # every kept question is used, for training or testing (--quick tests at most 8 of them)
    assert 1 <= results["test_set"]["n"] <= 8 and synthetic["kept"] >= results["test_set"]["n"] + \
        results["test_set"]["train_questions"]
    assert results["strategies"]["rag"]["metrics"]["recall_at_k"]["value"] > 0
    assert "synthetic" in (tmp_path / "docs-only" / "report.html").read_text(encoding="utf-8")


def test_synthetic_questions_added_to_the_human_ones_are_scored_apart(tmp_path):
    results = invoke("compare", "--docs", str(demo_corpus_dir()), "--train", str(demo_questions_file()),
                     "--strategies", "base,rag", "--quick", "--synthesize", "40", "--out", str(tmp_path / "added"))
    synthetic = results["test_set"]["synthetic"]
    assert synthetic["added"] and synthetic["model"] == "smollm2-135m" and synthetic["test_questions"] >= 1
    human_ids = {row["id"] for row in demo_questions()}
    assert results["per_question"] and all(row["id"] in human_ids for row in results["per_question"])
    assert results["strategies"]["rag"]["synthetic_metrics"]["recall_at_k"]["value"] > 0
    assert "Synthetic questions (scored apart)" in (tmp_path / "added" / "report.md").read_text(encoding="utf-8")
