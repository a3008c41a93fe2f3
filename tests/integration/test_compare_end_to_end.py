"""`ragtune demo --quick` on the real packaged models: every default strategy built and evaluated on the bundled
COVID-QA subset with a tiny budget, the report written and a verdict given; and a comparison on code answers
(questions answered by a call from standard-library docstrings) decided by a metric that sees code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

pytestmark = pytest.mark.integration


def test_quick_demo_compares_the_default_strategies_on_real_models(tmp_path, browser):
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)

    assert list(results["strategies"]) == ["base", "rag", "ft", "ft+rag", "raft"]
    rag, base = results["strategies"]["rag"], results["strategies"]["base"]
    assert rag["metrics"]["recall_at_k"]["value"] >= 0.5  # MiniLM + BM25 find the gold article
    assert rag["cost"]["prompt_tokens_per_question"] > 3 * base["cost"]["prompt_tokens_per_question"]
    for name in ("ft", "ft+rag", "raft"):
        assert results["strategies"][name]["cost"]["train_seconds"] > 0
    verdict = results["recommendation"]
    assert results["metric_choice"]["answer_kind"] == "short"
    # 8 questions over 10 pairs: no paired test can reach significance, and the verdict says so.
    assert verdict["verdict"] == "inconclusive" and verdict["strategy"] is None
    assert verdict["detectable_difference"] is None
    assert any("no difference can be significant" in reason["text"] for reason in verdict["reasons"])
    html = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and verdict["headline"] in html
    # No price per hour was given: costs are machine time, never "$0".
    for entry in results["strategies"].values():
        assert entry["cost"]["machine_seconds_per_1000_questions"] == pytest.approx(1000 * entry["latency"]["mean_s"])
    assert "machine time / 1,000 q." in html
    assert "$" not in " ".join(reason["text"] for reason in results["recommendation"]["reasons"])
    browser.set_window_size(1280, 900)  # the real report fits a desktop window
    browser.get((tmp_path / "demo" / "report.html").as_uri())
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280

    # People judge the real answers blind in the terminal; the report and the verdict take the votes in.
    demo = str(tmp_path / "demo")
    voted = CliRunner().invoke(app, ["arena", "--from-compare", demo, "--rater", "ana", "--seed", "1"],
                               input="a\nshorter\nb\n\nt\n\nq\n")
    assert voted.exit_code == 0 and "3 vote(s) stored" in voted.output, voted.output
    board = json.loads(CliRunner().invoke(app, ["arena", "report", "--from-compare", demo, "--json"]).stdout)
    assert board["votes"] == 3 and {r["strategy"] for r in board["ratings"]} == set(results["strategies"])
    updated = json.loads((tmp_path / "demo" / "results.json").read_text(encoding="utf-8"))
    assert updated["human_evaluation"]["votes"] == 3
    assert "Human evaluation (3 blind votes)" in (tmp_path / "demo" / "report.md").read_text(encoding="utf-8")


CODE_CALLS = Path(__file__).parents[1] / "data" / "code_calls"


def test_code_answers_are_decided_by_a_metric_that_sees_code(tmp_path):
    out = tmp_path / "code"
    result = CliRunner().invoke(app, ["compare", "--docs", str(CODE_CALLS / "docs"), "--train",
                                      str(CODE_CALLS / "questions.jsonl"), "--strategies", "base,rag,ft", "--quick",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    choice, verdict = results["metric_choice"], results["recommendation"]
    assert choice["answer_kind"] == "code"
    assert choice["metric"] in ("chrf", "code_f1", "code_exact_match", "rougeL")
    assert "code" in choice["reason"]
    chosen = verdict["strategy"]
    if chosen is not None:  # never a strategy significantly worse than another on the deciding metric
        for test in results["significance"]:
            if chosen in (test["a"], test["b"]) and test["significant"]:
                assert (test["mean_difference"] > 0) == (test["a"] == chosen), test
    assert choice["metric"] in json.dumps(results["significance"])
    # SQuAD normalisation flattens calls; the code metrics keep their parts.
    rag = results["strategies"]["rag"]["metrics"]
    assert rag["chrf"]["value"] > rag["exact_match"]["value"]

    # Judged again from the stored answers on another metric, without a model: the same answers, a new verdict.
    advised = CliRunner().invoke(app, ["advise", str(out), "--metric", "code_exact_match", "--json"])
    assert advised.exit_code == 0, advised.output
    again = json.loads(advised.stdout)
    assert again["per_question"] == results["per_question"]
    assert again["metric_choice"]["requested"] == "code_exact_match"
    assert {test["metric"] for test in again["significance"]} <= {again["metric_choice"]["metric"]}
