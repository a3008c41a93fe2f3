"""The report: a verdict card, self-contained HTML with every strategy, escaped user text, the question filter,
Markdown, plots and a results.json that loads back into the same typed results."""

from __future__ import annotations

import os
import re
import stat

import pytest
from evaluation.test_advice import make_results, strategy, update_entry

from ragtune.evaluation.advice import recommend
from ragtune.evaluation.plots import all_plots, quality_plot
from ragtune.evaluation.report import write_report
from ragtune.evaluation.results import Results

PLANTED = "<script>alert('x')</script>"
CURVE = [{"step": 10, "loss": 2.1}, {"step": 20, "loss": 1.6, "eval_loss": 1.8}, {"step": 30, "loss": 1.2,
                                                                                   "eval_loss": 1.5}]


def question(index: int, names: list[str]) -> dict:
    answers = {name: {"answer": f"answer {index} by {name}", "latency_s": 0.4,
                      "scores": {"f1": 1.0 if (index + len(name)) % 3 == 0 else 0.2, "exact_match": 0.0},
                      "passages": [{"source": f"doc{index}.md", "text": f"passage {index} for {name}"}]
                      if name in ("rag", "raft") else []}
               for name in names}
    text = f"What is {PLANTED} number {index}?" if index == 0 else f"Question {index}?"
    return {"id": f"q{index}", "question": text, "reference": f"reference {index}", "answers": answers}


def with_verdict(results: Results) -> Results:
    return results.model_copy(update={"recommendation": recommend(results, results.constraints)})


@pytest.fixture(scope="module")
def results() -> Results:
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
    return with_verdict(make_results(
        strategies, significance=[("raft", "rag", 0.03, 0.3), ("raft", "ft+rag", 0.01, 0.8), ("raft", "ft", 0.14, 0.004)],
        knowledge_update=update, constraints={"knowledge_changes": "weekly", "must_cite": True},
        per_question=[question(index, list(strategies)) for index in range(25)]))


@pytest.fixture(scope="module")
def written(results, tmp_path_factory) -> dict:
    return write_report(results, tmp_path_factory.mktemp("report"))


def test_all_files_are_written_with_the_umask_s_permissions(written):
    assert {"results.json", "report.html", "report.md", "plots/quality.png", "plots/quality_vs_cost.png",
            "plots/latency.png", "plots/training_curves.png", "plots/knowledge_update.png"} == set(written)
    umask = os.umask(0)
    os.umask(umask)
    for path in written.values():
        assert path.stat().st_size > 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path  # not mkstemp's 0600
    assert not list(written["report.html"].parent.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_html_is_self_contained_with_embedded_plots(written):
    html = written["report.html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count('src="data:image/png;base64,') == 5
    assert html.count("<script") == 1 and "<script src" not in html  # only the inline question filter


def test_html_escapes_user_text(written):
    html = written["report.html"].read_text()
    assert PLANTED not in html
    assert "What is &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; number 0?" in html


def test_verdict_card_leads_with_the_verdict_the_metric_and_the_key_numbers(written):
    html = written["report.html"].read_text()
    card = html[html.index('<section class="verdict recommended"'):html.index("</section>")]
    assert html.index('class="verdict') < html.index("<h2>Why</h2>") < html.index("<h2>Quality")
    assert "<h2>Recommended: rag (F1 0.41 [0.36, 0.46])</h2>" in card  # tied with raft, ft+rag; absorbs fastest
    assert "Deciding metric:</strong> F1 fits: short answers." in card
    assert "detects differences of about" in card
    assert "<td>raft</td><td>0.44 [0.39, 0.49]</td><td>Holm p = 0.6</td>" in card


def test_html_has_every_strategy_reasons_with_evidence_and_passages(written, results):
    html = written["report.html"].read_text()
    assert "the update of raft, ft+rag was not measured" in html
    for name in results.strategies:
        assert f"<td>{name}</td>" in html
    assert "<code>knowledge_update.strategies.rag.absorb_seconds</code> = 1.5" in html
    assert "<details><summary>1 passages</summary>" in html and "passage 3 for raft" in html
    assert '<tr class="deciding"><td>F1 (deciding)</td>' in html
    assert "<th>Holm p</th>" in html


def test_question_rows_carry_which_strategies_were_right(written):
    html = written["report.html"].read_text()
    # question 0 is right (F1 1.0) for the names whose length is a multiple of 3
    assert '<tr data-right="rag ft+rag" data-total="6"><td>q0</td>' in html
    assert '<select id="strategy-filter">' in html and '<option value="wrong">wrong</option>' in html


def test_markdown_has_the_verdict_tables_links_and_first_twenty_questions(written):
    markdown = written["report.md"].read_text()
    assert "## Recommended: rag (F1 0.41 [0.36, 0.46])" in markdown
    assert "| metric | base | rag | ft | ft-docs | ft+rag | raft |" in markdown
    assert "| F1 (deciding) | 0.10 [0.05, 0.15] | 0.41 [0.36, 0.46] |" in markdown
    assert "| raft | RAFT with retrieval | 3.6 min | $0.12 | 8.0 min |" in markdown
    assert "- [Quality per strategy](plots/quality.png)" in markdown
    assert "## Knowledge update" in markdown
    assert "| q19 |" in markdown and "| q20 |" not in markdown
    assert "<script>" not in markdown


def test_results_json_loads_back_into_the_same_typed_results(written, results):
    loaded = Results.load(written["results.json"].parent)
    assert loaded == results
    assert loaded.recommendation.excluded.keys() == {"base", "ft", "ft-docs"}


def test_an_inconclusive_verdict_shows_what_would_decide_it(tmp_path):
    inconclusive = with_verdict(make_results(
        {"base": strategy(0.12, retrieval=False), "rag": strategy(0.15, retrieval=True)},
        significance=[("rag", "base", 0.03, 0.4)], n=20, sd=0.3))
    html = write_report(inconclusive, tmp_path)["report.html"].read_text()
    assert '<section class="verdict inconclusive"' in html
    assert "<h2>Inconclusive: the 2 strategies are not separated on F1</h2>" in html
    assert "<h3>What would decide it</h3>" in html and "test questions" in html


def test_results_that_are_not_valid_are_refused_with_the_problem(tmp_path):
    from ragtune.errors import RagtuneError

    (tmp_path / "results.json").write_text('{"schema_version": 1}')
    with pytest.raises(RagtuneError, match="schema_version: Value error, schema version 1 is not the supported 2"):
        Results.load(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(RagtuneError, match="not valid JSON"):
        Results.load(tmp_path)


def test_plots_are_deterministic_png_and_skip_what_was_not_measured():
    bare = with_verdict(make_results({"rag": strategy(0.4, retrieval=True), "ft": strategy(0.3, retrieval=False)}))
    first, second = quality_plot(bare), quality_plot(bare)
    assert first == second and first.startswith(b"\x89PNG")
    assert set(all_plots(bare)) == {"quality", "quality_vs_cost", "latency"}
