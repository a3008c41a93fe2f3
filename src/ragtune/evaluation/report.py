"""The comparison report: results.json, a self-contained report.html and report.md with PNG plots.

The HTML opens offline: inline CSS, plots as base64 data URIs, no external fonts or files, and one small inline
script that filters the question table (the page reads the same without it). Every text that comes from the
user's data or configuration is HTML-escaped. Tables wrap their text so the page fits a 1280-pixel window.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.evaluation.advice import format_interval, format_money, format_seconds
from ragtune.evaluation.plots import all_plots, plotted_metric
from ragtune.evaluation.registry import METRICS, metric_label
from ragtune.evaluation.results import Reason, Results, resolve

MARKDOWN_QUESTIONS = 20
RIGHT_AT = 0.5  # an answer counts as right in the question filter when its deciding-metric score reaches this
PLOT_TITLES = {"quality": "Quality per strategy", "quality_vs_cost": "Quality against cost",
               "latency": "Latency per question", "training_curves": "Training curves",
               "knowledge_update": "Knowledge update", "human_ratings": "Human preference"}
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em;
       overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f2f2f2; overflow-wrap: break-word; }
tr.chosen td, td.chosen { background: #eef7ee; font-weight: 600; }
tr.deciding td { background: #f3f0fb; font-weight: 600; }
.verdict { border: 2px solid #2a7; border-radius: 8px; padding: 0.6em 1.4em 1em; background: #f6fbf7; }
.verdict.inconclusive { border-color: #d90; background: #fffaf0; }
.verdict h2 { margin: 0.4em 0; }
.verdict .why { margin: 0.3em 0; }
.numbers { width: auto; min-width: 50%; }
.evidence { color: #555; font-size: 0.85em; margin: 0.2em 0 0.6em; }
code { background: #f4f4f4; padding: 0 0.2em; }
figure { display: inline-block; margin: 0.5em; max-width: 100%; }
img { max-width: 100%; height: auto; }
details { font-size: 0.85em; margin-top: 0.3em; }
.passage { border-left: 3px solid #ccc; padding-left: 0.5em; margin: 0.3em 0; white-space: pre-wrap; }
.score { color: #555; font-size: 0.85em; }
.filters { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; margin: 0.5em 0; }
.right { border-left: 4px solid #2a7; }
.wrong { border-left: 4px solid #c44; }
"""
FILTER_SCRIPT = """
(function () {
  var strategy = document.getElementById('strategy-filter'), outcome = document.getElementById('outcome-filter');
  var count = document.getElementById('question-count');
  function apply() {
    var chosen = strategy.value, wanted = outcome.value, shown = 0;
    document.querySelectorAll('#questions [data-strategy]').forEach(function (cell) {
      cell.hidden = chosen !== 'all' && cell.dataset.strategy !== chosen;
    });
    document.querySelectorAll('#questions tbody tr').forEach(function (row) {
      var right = row.dataset.right ? row.dataset.right.split(' ') : [];
      var total = Number(row.dataset.total), ok = true;
      if (wanted !== 'any') {
        var isRight = chosen === 'all' ? right.length === total : right.indexOf(chosen) >= 0;
        var isWrong = chosen === 'all' ? right.length === 0 : right.indexOf(chosen) < 0;
        ok = wanted === 'right' ? isRight : isWrong;
      }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + ' shown';
  }
  strategy.addEventListener('change', apply);
  outcome.addEventListener('change', apply);
  apply();
})();
"""


def write_report(results: Results, out_dir: Path) -> dict[str, Path]:
    """Write results.json, report.html, report.md and plots/*.png into `out_dir`, atomically each.

    Returns the written paths keyed by their path relative to `out_dir`.
    """
    out_dir = Path(out_dir)
    plots = all_plots(results)
    written = {}
    for name, png in plots.items():
        written[f"plots/{name}.png"] = write_bytes_atomically(out_dir / "plots" / f"{name}.png", png)
    documents = {"report.md": render_markdown(results, list(plots)), "report.html": render_html(results, plots)}
    for name, text in documents.items():
        written[name] = write_bytes_atomically(out_dir / name, text.encode("utf-8"))
    written["results.json"] = results.save(out_dir)
    return written


# Tables as plain strings, shared by the HTML and the Markdown.

def _optional(value, formatter) -> str:
    return "—" if value is None else formatter(value)


def _metric_names(results: Results) -> list[str]:
    """Every metric measured for some strategy, in the registry's order, the deciding one first."""
    present = {metric for strategy in results.strategies.values() for metric in strategy.metrics}
    ordered = [metric for metric in METRICS if metric in present]
    deciding = results.deciding_metric
    return ([deciding] if deciding in present else []) + [metric for metric in ordered if metric != deciding]


def quality_table(results: Results, *, synthetic: bool = False) -> tuple[list[str], list[list[str]]]:
    """One row per metric, one column per strategy: the mean with its 95% interval (`synthetic`: on the synthetic
    test questions added to a human set)."""
    names = list(results.strategies)
    rows = []
    for metric in _metric_names(results):
        label = metric_label(metric) + (" (deciding)" if metric == results.deciding_metric and not synthetic else "")
        rows.append([label, *(_optional((results.strategies[name].synthetic_metrics if synthetic else
                                         results.strategies[name].metrics).get(metric), format_interval)
                              for name in names)])
    return ["metric", *names], rows


def human_tables(results: Results) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    """The human evaluation as (title, table): the leaderboard, the win rates, and bias and agreement."""
    human = results.human_evaluation
    leaderboard = (["#", "strategy", "rating", "95% interval", "battles"],
                   [[str(rank), r.strategy, f"{r.score:.0f}", f"[{r.ci_low:.0f}, {r.ci_high:.0f}]", str(r.battles)]
                    for rank, r in enumerate(human.ratings, 1)])
    names = [r.strategy for r in human.ratings]
    win_rates = (["row beats column", *names],
                 [[row, *("—" if row == column or human.win_rates[row][column] is None else
                          f"{human.win_rates[row][column]:.0%} of {human.counts[row][column]}" for column in names)]
                  for row in names])
    bias, agreement = human.position_bias, human.agreement
    checks = (["check", "value"], [
        ["votes", str(human.votes)],
        ["position bias (left side wins, of decisive votes)",
         f"{bias['left_win_share']:.0%} of {bias['decisive']} (p = {bias['p_value']:.3g})" if bias["decisive"]
         else "no decisive votes"],
        *([[f"agreement {' & '.join(pair['raters'])} (Cohen's kappa, {pair['shared']} shared battles)",
            "—" if pair["kappa"] is None else f"{pair['kappa']:.2f}"] for pair in agreement["pairs"]]),
        *([[f"agreement of all raters (Fleiss' kappa, {agreement['fleiss_battles']} battles)",
            f"{agreement['fleiss_kappa']:.2f}"]] if agreement["fleiss_kappa"] is not None else []),
        *([[f"{entry['rater']} agrees with the other raters' majority",
            f"{entry['agreeing']} of {entry['compared']}"] for entry in agreement["consensus"] if entry["compared"]]),
        ["more votes", human.stopping_hint]])
    return [("Leaderboard", leaderboard), ("Win rates", win_rates), ("Bias and agreement", checks)]


def _has_synthetic_scores(results: Results) -> bool:
    return any(strategy.synthetic_metrics for strategy in results.strategies.values())


def synthetic_agreement(results: Results) -> str:
    """How the strategies' order on the added synthetic questions compares with their order on the human ones, on
    the deciding metric (Kendall's tau of the means)."""
    from scipy.stats import kendalltau

    metric = plotted_metric(results)
    pairs = [(strategy.metrics[metric].value, strategy.synthetic_metrics[metric].value)
             for strategy in results.strategies.values()
             if metric in strategy.metrics and metric in strategy.synthetic_metrics]
    info = results.test_set.synthetic
    opening = (f"{info['test_questions']} synthetic test question{'s' * (info['test_questions'] != 1)}, scored "
               f"apart: they never decide "
               f"({info['train_questions']} more were added to the training questions)")
    if len(pairs) < 2 or len({human for human, _ in pairs}) < 2 or len({synth for _, synth in pairs}) < 2:
        return opening + "."
    tau = kendalltau(*zip(*pairs)).statistic
    order = "the same order as" if tau == 1 else "another order than"
    return (f"{opening}. On {metric_label(metric)} they rank the strategies in {order} the human questions "
            f"(Kendall's tau {tau:+.2f} over {len(pairs)} strategies).")


def cost_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per strategy: machine time (and money, with a price per hour) per 1,000 questions, training,
    latency and prompt size."""
    priced = results.is_priced()
    header = ["strategy", "description", "machine time / 1,000 q.", *(["cost / 1,000 q."] if priced else []),
              "training time", *(["training cost"] if priced else []), "training peak memory", "trainable params",
              "p50 latency", "p95 latency", "prompt tokens / q."]
    rows = []
    for name, strategy in results.strategies.items():
        cost, latency = strategy.cost, strategy.latency
        rows.append([name, strategy.description, format_seconds(cost.machine_seconds_per_1000_questions),
                     *([format_money(cost.cost_per_1000_questions)] if priced else []),
                     _optional(cost.train_seconds, format_seconds),
                     *([_optional(cost.training_cost, format_money)] if priced else []),
                     _optional(cost.train_peak_memory_gb, lambda gb: f"{gb:.1f} GB"),
                     _optional(cost.trainable_parameters, lambda n: f"{n:,}"),
                     format_seconds(latency.p50_s), format_seconds(latency.p95_s),
                     f"{cost.prompt_tokens_per_question:.0f}"])
    return header, rows


def significance_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """The paired tests on the deciding metric: difference a − b with its CI, raw and Holm-adjusted p."""
    header = ["#", "a", "b", "metric", "n", "difference (a − b)", "CI", "p", "Holm p", "McNemar p (raw)", "significant"]
    rows = [[str(index), entry.a, entry.b, metric_label(entry.metric), str(entry.n), f"{entry.mean_difference:+.3f}",
             f"[{entry.ci_low:+.3f}, {entry.ci_high:+.3f}]", f"{entry.p_value:.3g}", f"{entry.p_adjusted:.3g}",
             _optional(entry.mcnemar_p_value, lambda p: f"{p:.3g}"), "yes" if entry.significant else "no"]
            for index, entry in enumerate(results.significance)]
    return header, rows


def knowledge_update_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """Per strategy: how it absorbed the new documents, how long it took, and its scores before and after."""
    metric = plotted_metric(results)
    label = metric_label(metric)
    header = ["strategy", "how", "absorb time", "peak memory", f"new questions {label}", f"old before {label}",
              f"old after {label}", "forgetting"]
    rows = [[name, entry.how, format_seconds(entry.absorb_seconds),
             _optional(entry.absorb_peak_memory_gb, lambda gb: f"{gb:.1f} GB"),
             *(_optional(getattr(entry, key).get(metric), lambda v: f"{v:.2f}")
               for key in ("new", "old_before", "old_after")),
             _optional(entry.forgetting(metric), lambda v: f"{v:.2f}")]
            for name, entry in results.knowledge_update.strategies.items()]
    return header, rows


def settings_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """The constraints, configuration, seed and test-set size the comparison ran with."""
    constraints = results.constraints.model_dump(exclude_none=True)
    settings = {**{f"constraint: {key}": value for key, value in constraints.items()},
                **results.config.model_dump(), "deciding metric": results.deciding_metric, "seed": results.seed,
                "test questions": results.test_set.n, "answer kinds": results.metric_choice.answer_kinds,
                **({"questions": synthetic_note(results.test_set.synthetic)} if results.test_set.synthetic else {}),
                "created": results.created}
    return ["setting", "value"], [[key, str(value)] for key, value in settings.items()]


def synthetic_note(synthetic: dict) -> str:
    """What the report says of a synthesized question set (the whole set, or added to a human one)."""
    origin = (f"written from the documents by {synthetic['model']}, {synthetic['kept']} of {synthetic['planned']} "
              f"kept by the checks (pass rate {synthetic['pass_rate']:.0%})")
    if synthetic.get("added"):
        return (f"human, with synthetic questions added ({origin}): {synthetic['train_questions']} in training, "
                f"{synthetic['test_questions']} scored apart; the human test questions decide")
    return f"synthetic: {origin}; a human set may rank the strategies differently"


def _evidence_value(value) -> str:
    """An evidence value in a sentence: metrics with their CI, tests with difference and p, numbers to 4 digits."""
    if hasattr(value, "ci_low") and hasattr(value, "value"):
        return format_interval(value)
    if hasattr(value, "ci_low") and hasattr(value, "score"):
        return f"rating {value.score:.0f} [{value.ci_low:.0f}, {value.ci_high:.0f}] from {value.battles} battles"
    if hasattr(value, "mean_difference"):
        return (f"{value.a} − {value.b} on {metric_label(value.metric)}: {value.mean_difference:+.3f} "
                f"[{value.ci_low:+.3f}, {value.ci_high:+.3f}], p = {value.p_value:.3g}, Holm p = "
                f"{value.p_adjusted:.3g}")
    if hasattr(value, "reason"):
        return value.reason
    if isinstance(value, list) and value and hasattr(value[0], "step"):
        return f"{len(value)} points to step {value[-1].step}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# HTML

def _html_table(header: list[str], rows: list[list[str]], *, chosen: str | None = None,
                highlight_row: int | None = None, css_class: str = "") -> str:
    """A table of plain-text cells; the row whose first cell is `chosen`, or row `highlight_row`, is highlighted."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = []
    for index, row in enumerate(rows):
        marker = ' class="chosen"' if chosen is not None and row[0] == chosen else (
            ' class="deciding"' if index == highlight_row else "")
        body.append(f"<tr{marker}>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    table_class = f' class="{css_class}"' if css_class else ""
    return f'<div class="scroll"><table{table_class}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}' \
           "</tbody></table></div>"


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{escape(PLOT_TITLES[name])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(PLOT_TITLES[name])}</figcaption></figure>")


def _reason_items(results: Results, reasons: list[Reason]) -> str:
    items = []
    for reason in reasons:
        evidence = ", ".join(f"<code>{escape(path)}</code> = {escape(_evidence_value(resolve(results, path)))}"
                             for path in reason.evidence)
        items.append(f"<li>{escape(reason.text)}<div class=\"evidence\">evidence: {evidence}</div></li>")
    return "".join(items)


def _key_numbers(results: Results) -> list[list[str]]:
    """Per strategy: the deciding metric with its interval and the Holm-adjusted p against the verdict's best."""
    metric, advice = results.deciding_metric, results.recommendation
    if metric is None:
        return []
    measured = {name: s.metrics[metric] for name, s in results.strategies.items() if metric in s.metrics}
    reference = advice.strategy or max(measured, key=lambda name: measured[name].value)
    rows = []
    for name, measure in sorted(measured.items(), key=lambda item: -item[1].value):
        test = next((entry for entry in results.significance if {entry.a, entry.b} == {name, reference}), None)
        versus = "—" if test is None else f"Holm p = {test.p_adjusted:.2g}" + (" (significant)"
                                                                               if test.significant else "")
        rows.append([name, format_interval(measure), versus])
    return rows


def _verdict_html(results: Results) -> str:
    advice, choice = results.recommendation, results.metric_choice
    kind = "recommended" if advice.verdict == "recommended" else "inconclusive"
    parts = [f'<section class="verdict {kind}" id="verdict"><h2>{escape(advice.headline)}</h2>',
             f'<p class="why"><strong>Deciding metric:</strong> {escape(choice.reason)}.</p>']
    if advice.detectable_difference is not None:
        parts.append(f'<p class="why"><strong>Resolution:</strong> this test set of {results.test_set.n} questions '
                     f"detects differences of about {advice.detectable_difference:.2f} "
                     f"({escape(metric_label(results.deciding_metric))}, 80% power, Holm-corrected 5% level).</p>")
    numbers = _key_numbers(results)
    if numbers:
        reference = advice.strategy or numbers[0][0]
        parts.append(_html_table(["strategy", f"{metric_label(results.deciding_metric)} [95% CI]",
                                  f"vs {reference}"], numbers, chosen=advice.strategy, css_class="numbers"))
    if advice.what_would_decide:
        parts.append(f"<h3>What would decide it</h3><ul>{_reason_items(results, advice.what_would_decide)}</ul>")
    parts.append("</section>")
    return "".join(parts)


def _reasons_html(results: Results) -> str:
    advice = results.recommendation
    excluded = "".join(f"<li><strong>{escape(name)}</strong>: {escape(why)}</li>"
                       for name, why in advice.excluded.items())
    return (f"<h2>Why</h2><ol>{_reason_items(results, advice.reasons)}</ol>"
            + (f"<h3>Excluded</h3><ul>{excluded}</ul>" if excluded else ""))


def _is_right(score: float | None) -> bool:
    return score is not None and score >= RIGHT_AT


def _answer_cell(results: Results, name: str, answer) -> str:
    """One strategy's answer with its deciding score and, folded away, the passages it retrieved."""
    metric = plotted_metric(results)
    score = answer.scores.get(metric)
    scores = f"{metric_label(metric)} {_optional(score, lambda v: f'{v:.2f}')} · {format_seconds(answer.latency_s)}"
    cell = f"{escape(answer.answer)}<div class=\"score\">{escape(scores)}</div>"
    if answer.passages:
        passages = "".join(f"<div class=\"passage\"><strong>{escape(passage.source)}</strong>\n"
                           f"{escape(passage.text)}</div>" for passage in answer.passages)
        cell += f"<details><summary>{len(answer.passages)} passages</summary>{passages}</details>"
    outcome = "right" if _is_right(score) else "wrong"
    return f'<td class="{outcome}" data-strategy="{escape(name)}">{cell}</td>'


def _questions_html(results: Results) -> str:
    names, metric = list(results.strategies), plotted_metric(results)
    options = "".join(f'<option value="{escape(name)}">{escape(name)}</option>' for name in names)
    filters = (f'<div class="filters"><label>Strategy <select id="strategy-filter"><option value="all">every '
               f'strategy</option>{options}</select></label><label>Outcome <select id="outcome-filter">'
               '<option value="any">any</option><option value="right">right</option><option value="wrong">wrong'
               f'</option></select></label><span class="score">right = {escape(metric_label(metric))} ≥ '
               f'{RIGHT_AT}; with every strategy, right (wrong) means all of them</span>'
               '<span id="question-count" class="score"></span></div>')
    head = "".join(f"<th>{escape(cell)}</th>" for cell in ["id", "question", "reference"])
    head += "".join(f'<th data-strategy="{escape(name)}">{escape(name)}</th>' for name in names)
    rows = []
    for row in results.per_question:
        right = " ".join(name for name in names if name in row.answers
                         and _is_right(row.answers[name].scores.get(metric)))
        answers = "".join(_answer_cell(results, name, row.answers[name]) if name in row.answers
                          else f'<td data-strategy="{escape(name)}">—</td>' for name in names)
        rows.append(f'<tr data-right="{escape(right)}" data-total="{len(names)}"><td>{escape(row.id)}</td>'
                    f"<td>{escape(row.question)}</td><td>{escape(row.reference)}</td>{answers}</tr>")
    return (f'{filters}<div class="scroll"><table id="questions"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def render_html(results: Results, plots: dict[str, bytes]) -> str:
    """The whole report as one self-contained HTML page."""
    config, chosen = results.config, results.recommendation.strategy
    title = f"ragtune compare: {config.model} on {config.docs}"
    figures = "".join(_figure(name, png) for name, png in plots.items()
                      if name not in ("knowledge_update", "human_ratings"))
    quality_header, quality_rows = quality_table(results)
    sections = [f"<h1>{escape(title)}</h1>", _verdict_html(results), _reasons_html(results),
                f"<h2>Quality ({results.test_set.n} test questions, 95% intervals)</h2>",
                _html_table(quality_header, quality_rows, highlight_row=0 if results.deciding_metric else None),
                *(["<h2>Synthetic questions (scored apart)</h2>", f"<p>{escape(synthetic_agreement(results))}</p>",
                   _html_table(*quality_table(results, synthetic=True))] if _has_synthetic_scores(results) else []),
                "<h2>Cost and latency</h2>", _html_table(*cost_table(results), chosen=chosen),
                "<h2>Paired tests on the deciding metric</h2>", _html_table(*significance_table(results)),
                "<h2>Plots</h2>", figures]
    if results.human_evaluation:
        sections.append(f"<h2>Human evaluation ({results.human_evaluation.votes} blind votes)</h2>")
        for title, table in human_tables(results):
            sections += [f"<h3>{escape(title)}</h3>", _html_table(*table)]
        if "human_ratings" in plots:
            sections.append(_figure("human_ratings", plots["human_ratings"]))
    if results.knowledge_update:
        update = results.knowledge_update
        sections += ["<h2>Knowledge update</h2>",
                     (f"<p>{update.new_documents} new documents, {update.new_questions} new questions, "
                      f"{update.old_questions} old questions.</p>"),
                     _html_table(*knowledge_update_table(results), chosen=chosen)]
        if "knowledge_update" in plots:
            sections.append(_figure("knowledge_update", plots["knowledge_update"]))
    sections += ["<h2>Constraints and configuration</h2>", _html_table(*settings_table(results)),
                 f"<h2>Questions ({len(results.per_question)})</h2>", _questions_html(results)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(sections)
            + f"\n<script>{FILTER_SCRIPT}</script>\n</body></html>\n")


# Markdown

def _markdown_cell(text: str) -> str:
    """A table cell: one line, pipes escaped, HTML made inert."""
    return escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in rows]


def _markdown_reasons(reasons: list[Reason]) -> list[str]:
    return [f"{number}. {_markdown_cell(reason.text)} (evidence: {', '.join(f'`{path}`' for path in reason.evidence)})"
            for number, reason in enumerate(reasons, 1)]


def _markdown_questions(results: Results) -> list[str]:
    names, metric = list(results.strategies), plotted_metric(results)
    rows = []
    for row in results.per_question[:MARKDOWN_QUESTIONS]:
        answers = [f"{row.answers[name].answer} ({metric_label(metric)} "
                   f"{_optional(row.answers[name].scores.get(metric), lambda v: f'{v:.2f}')})"
                   if name in row.answers else "—" for name in names]
        rows.append([row.id, row.question, row.reference, *answers])
    return _markdown_table(["id", "question", "reference", *names], rows)


def render_markdown(results: Results, plot_names: list[str]) -> str:
    """The report in Markdown, linking the PNG plots in plots/ and showing the first questions."""
    advice = results.recommendation
    lines = [f"# ragtune compare: {_markdown_cell(results.config.model)}", "",
             f"## {_markdown_cell(advice.headline)}", "",
             f"Deciding metric: {_markdown_cell(results.metric_choice.reason)}.", ""]
    if results.test_set.synthetic:
        lines += [f"Questions: {_markdown_cell(synthetic_note(results.test_set.synthetic))}.", ""]
    if advice.detectable_difference is not None:
        lines += [f"Resolution: this test set of {results.test_set.n} questions detects differences of about "
                  f"{advice.detectable_difference:.2f} (80% power, Holm-corrected 5% level).", ""]
    lines += _markdown_reasons(advice.reasons)
    if advice.what_would_decide:
        lines += ["", "What would decide it:", "", *_markdown_reasons(advice.what_would_decide)]
    if advice.excluded:
        lines += ["", "Excluded:", ""] + [f"- {_markdown_cell(name)}: {_markdown_cell(why)}"
                                          for name, why in advice.excluded.items()]
    lines += ["", "## Quality", "", *_markdown_table(*quality_table(results))]
    if _has_synthetic_scores(results):
        lines += ["", "## Synthetic questions (scored apart)", "", _markdown_cell(synthetic_agreement(results)), "",
                  *_markdown_table(*quality_table(results, synthetic=True))]
    lines += ["", "## Cost and latency", "", *_markdown_table(*cost_table(results))]
    lines += ["", "## Paired tests on the deciding metric", "", *_markdown_table(*significance_table(results))]
    if results.human_evaluation:
        lines += ["", f"## Human evaluation ({results.human_evaluation.votes} blind votes)"]
        for title, table in human_tables(results):
            lines += ["", f"### {title}", "", *_markdown_table(*table)]
    if results.knowledge_update:
        lines += ["", "## Knowledge update", "", *_markdown_table(*knowledge_update_table(results))]
    lines += ["", "## Plots", ""] + [f"- [{PLOT_TITLES[name]}](plots/{name}.png)" for name in plot_names]
    lines += ["", "## Constraints and configuration", "", *_markdown_table(*settings_table(results))]
    shown = min(MARKDOWN_QUESTIONS, len(results.per_question))
    lines += ["", f"## Questions (first {shown} of {len(results.per_question)})", "", *_markdown_questions(results)]
    return "\n".join(lines) + "\n"
