"""The report: self-contained HTML with every strategy, escaped user text, Markdown, plots and results.json."""

from __future__ import annotations

import json
import re

import pytest
from evaluation.test_advice import make_results, strategy, update_entry

from ragtune.evaluation.plots import all_plots, quality_plot
from ragtune.evaluation.report import write_report

PLANTED = "<script>alert('x')</script>"
CURVE = [{"step": 10, "loss": 2.1}, {"step": 20, "loss": 1.6, "eval_loss": 1.8}, {"step": 30, "loss": 1.2,
                                                                                   "eval_loss": 1.5}]


def question(index: int, names: list[str]) -> dict:
    answers = {name: {"answer": f"answer {index} by {name}", "exact_match": float(index % 2), "f1": 0.5,
                      "latency_s": 0.4,
                      "passages": [{"source": f"doc{index}.md", "text": f"passage {index} for {name}"}]
                      if name in ("rag", "raft") else []}
               for name in names}
    text = f"What is {PLANTED} number {index}?" if index == 0 else f"Question {index}?"
    return {"id": f"q{index}", "question": text, "reference": f"reference {index}", "answers": answers}


@pytest.fixture(scope="module")
def results() -> dict:
    strategies = {"base": strategy(0.10, retrieval=False, cost=0.02),
                  "rag": strategy(0.41, retrieval=True, cost=0.12),
                  "ft": strategy(0.30, retrieval=False, cost=0.03, train_seconds=420, training_cost=0.23, curve=CURVE),
                  "ft-docs": strategy(0.25, retrieval=False, cost=0.03, train_seconds=900, training_cost=0.5,
                                      curve=CURVE),
                  "ft+rag": strategy(0.43, retrieval=True, cost=0.12, train_seconds=420, training_cost=0.23),
                  "raft": strategy(0.44, retrieval=True, cost=0.12, train_seconds=480, training_cost=0.27)}
    update = {"new_documents": 3, "new_questions": 6, "old_questions": 25,
              "strategies": {"rag": update_entry(1.5, 0.5, 0.41, 0.41, "re-index"),
                             "ft": update_entry(400.0, 0.2, 0.30, 0.26, "retrain")}}
    return make_results(strategies, significance=[("raft", "rag", 0.03, 0.3), ("raft", "ft", 0.14, 0.004)],
                        knowledge_update=update, constraints={"knowledge_changes": "weekly", "must_cite": True},
                        per_question=[question(index, list(strategies)) for index in range(25)])


@pytest.fixture(scope="module")
def written(results, tmp_path_factory) -> dict:
    return write_report(results, tmp_path_factory.mktemp("report"))


def test_all_files_are_written(written):
    assert {"results.json", "report.html", "report.md", "plots/quality.png", "plots/quality_vs_cost.png",
            "plots/latency.png", "plots/training_curves.png", "plots/knowledge_update.png"} == set(written)
    for path in written.values():
        assert path.stat().st_size > 0
    assert not list(written["report.html"].parent.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_html_is_self_contained_with_embedded_plots(written):
    html = written["report.html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count('src="data:image/png;base64,') == 5


def test_html_escapes_user_text(written):
    html = written["report.html"].read_text()
    assert "<script" not in html
    assert "What is &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; number 0?" in html


def test_html_has_every_strategy_the_recommendation_and_passages(written, results):
    html = written["report.html"].read_text()
    advice = json.loads(written["results.json"].read_text())["recommendation"]
    assert advice["strategy"] == "rag"  # tied with raft and ft+rag, absorbs new documents fastest
    assert "the update of raft, ft+rag was not measured" in html
    assert f"<h2>Recommendation: {advice['strategy']}</h2>" in html
    for name in results["strategies"]:
        assert f"<td>{name}</td>" in html
    assert "<code>knowledge_update.strategies.rag.absorb_seconds</code> = 1.5" in html
    assert "<details><summary>1 passages</summary>" in html and "passage 3 for raft" in html
    assert "0.41 [0.36, 0.46]" in html


def test_markdown_has_summary_links_and_first_twenty_questions(written):
    markdown = written["report.md"].read_text()
    assert "## Recommendation: rag" in markdown
    assert "| strategy | description | exact match | F1 |" in markdown
    assert "| raft | RAFT with retrieval | 0.34 [0.29, 0.39] | 0.44 [0.39, 0.49] | 3.6 min | $0.12 | 8.0 min |" in markdown
    assert "- [Quality per strategy](plots/quality.png)" in markdown
    assert "## Knowledge update" in markdown
    assert "| q19 |" in markdown and "| q20 |" not in markdown
    assert "<script>" not in markdown


def test_results_json_round_trips_with_the_recommendation(written, results):
    saved = json.loads(written["results.json"].read_text())
    assert saved == {**results, "recommendation": saved["recommendation"]}
    assert "recommendation" not in results  # the caller's dict is left as it was
    assert saved["recommendation"]["excluded"].keys() == {"base", "ft", "ft-docs"}


def test_plots_are_deterministic_png_and_skip_what_was_not_measured():
    bare = make_results({"rag": strategy(0.4, retrieval=True), "ft": strategy(0.3, retrieval=False)})
    first, second = quality_plot(bare), quality_plot(bare)
    assert first == second and first.startswith(b"\x89PNG")
    assert set(all_plots(bare)) == {"quality", "quality_vs_cost", "latency"}
