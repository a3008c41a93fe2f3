"""The comparison report: results.json, a self-contained report.html and report.md with PNG plots.

The HTML opens offline: inline CSS, plots as base64 data URIs, no scripts or external fonts; every text that
comes from the user's data or configuration is HTML-escaped.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.evaluation.advice import (
    METRIC_LABELS,
    Constraints,
    format_interval,
    format_money,
    format_seconds,
    metric_label,
    recommend,
)
from ragtune.evaluation.costs import is_priced
from ragtune.evaluation.plots import all_plots, knowledge_update_metric

MARKDOWN_QUESTIONS = 20
PLOT_TITLES = {"quality": "Quality per strategy", "quality_vs_cost": "Quality against cost",
               "latency": "Latency per question", "training_curves": "Training curves",
               "knowledge_update": "Knowledge update"}
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.chosen td { background: #eef7ee; font-weight: 600; }
.recommendation { border: 2px solid #2a7; border-radius: 6px; padding: 0.5em 1.5em; background: #f6fbf7; }
.evidence { color: #555; font-size: 0.85em; margin: 0.2em 0 0.6em; }
code { background: #f4f4f4; padding: 0 0.2em; }
figure { display: inline-block; margin: 0.5em; }
img { max-width: 100%; }
details { font-size: 0.85em; margin-top: 0.3em; }
.passage { border-left: 3px solid #ccc; padding-left: 0.5em; margin: 0.3em 0; white-space: pre-wrap; }
.score { color: #555; font-size: 0.85em; }
"""


def write_report(results: dict, out_dir: Path) -> dict[str, Path]:
    """Write results.json, report.html, report.md and plots/*.png into `out_dir`, atomically each.

    The recommendation is computed from `results["constraints"]` unless `results` already carries one.
    Returns the written paths keyed by their path relative to `out_dir`.
    """
    out_dir = Path(out_dir)
    if "recommendation" not in results:
        constraints = Constraints.from_dict(results.get("constraints", {}))
        results = {**results, "recommendation": recommend(results, constraints)}
    plots = all_plots(results)
    written = {}
    for name, png in plots.items():
        written[f"plots/{name}.png"] = write_bytes_atomically(out_dir / "plots" / f"{name}.png", png)
    documents = {"report.md": render_markdown(results, list(plots)), "report.html": render_html(results, plots),
                 "results.json": json.dumps(results, indent=2, ensure_ascii=False)}
    for name, text in documents.items():
        written[name] = write_bytes_atomically(out_dir / name, text.encode("utf-8"))
    return written


# Tables as plain strings, shared by the HTML and the Markdown.

def _metric_names(results: dict) -> list[str]:
    """Every metric measured for some strategy, in the usual order, unknown ones last."""
    present = {metric for strategy in results["strategies"].values() for metric in strategy["metrics"]}
    return [metric for metric in METRIC_LABELS if metric in present] + sorted(present - set(METRIC_LABELS))


def _optional(value, formatter) -> str:
    return "—" if value is None else formatter(value)


def summary_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """One row per strategy: every metric with its CI, machine time (and money, when the comparison had a price
    per hour) per 1,000 questions, training time, latency and prompt size."""
    metrics, priced = _metric_names(results), is_priced(results)
    header = ["strategy", "description", *map(metric_label, metrics), "machine time / 1,000 questions",
              *(["cost / 1,000 questions"] if priced else []), "training time", *(["training cost"] if priced else []),
              "p50 latency", "p95 latency", "prompt tokens / question"]
    rows = []
    for name, strategy in results["strategies"].items():
        cost, latency = strategy["cost"], strategy["latency"]
        money = [format_money(cost["cost_per_1000_questions"])] if priced else []
        training_money = [_optional(cost["training_cost"], format_money)] if priced else []
        rows.append([name, strategy["description"],
                     *(_optional(strategy["metrics"].get(metric), format_interval) for metric in metrics),
                     format_seconds(cost["machine_seconds_per_1000_questions"]), *money,
                     _optional(cost["train_seconds"], format_seconds), *training_money,
                     format_seconds(latency["p50_s"]), format_seconds(latency["p95_s"]),
                     f"{cost['prompt_tokens_per_question']:.0f}"])
    return header, rows


def significance_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """The paired tests: difference a − b with its CI and p-values."""
    header = ["#", "a", "b", "metric", "difference (a − b)", "CI", "p", "McNemar p", "significant"]
    rows = [[str(index), entry["a"], entry["b"], metric_label(entry["metric"]), f"{entry['mean_difference']:+.3f}",
             f"[{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}]", f"{entry['p_value']:.3g}",
             _optional(entry.get("mcnemar_p_value"), lambda p: f"{p:.3g}"), "yes" if entry["significant"] else "no"]
            for index, entry in enumerate(results.get("significance", []))]
    return header, rows


def knowledge_update_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per strategy: how it absorbed the new documents, how long it took, and its scores before and after."""
    metric = knowledge_update_metric(results)
    label = metric_label(metric)
    header = ["strategy", "how", "absorb time", "peak memory", f"new questions {label}", f"old before {label}",
              f"old after {label}", "forgetting"]
    rows = [[name, entry["how"], format_seconds(entry["absorb_seconds"]),
             _optional(entry["absorb_peak_memory_gb"], lambda gb: f"{gb:.1f} GB"),
             *(_optional(entry[key].get(metric), lambda v: f"{v:.2f}") for key in ("new", "old_before", "old_after")),
             f"{entry['forgetting']:.2f}"]
            for name, entry in results["knowledge_update"]["strategies"].items()]
    return header, rows


def settings_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """The constraints, configuration, seed and test-set size the comparison ran with."""
    settings = {**{f"constraint: {key}": value for key, value in results.get("constraints", {}).items()},
                **results["config"], "primary metric": results["primary_metric"], "seed": results["seed"],
                "test questions": results["test_set"]["n"], "created": results["created"]}
    return ["setting", "value"], [[key, str(value)] for key, value in settings.items()]


def _resolve(results: dict, path: str):
    """The value at an evidence path such as "strategies.rag.metrics.f1" or "significance[3]"."""
    value = results
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        value = value[int(index)] if index else value[key]
    return value


def _evidence_value(value) -> str:
    """An evidence value in a sentence: metrics with their CI, tests with difference and p, numbers to 4 digits."""
    if isinstance(value, dict) and "ci_low" in value and "value" in value:
        return format_interval(value)
    if isinstance(value, dict) and "mean_difference" in value:
        return (f"{value['a']} − {value['b']} on {metric_label(value['metric'])}: {value['mean_difference']:+.3f} "
                f"[{value['ci_low']:+.3f}, {value['ci_high']:+.3f}], p = {value['p_value']:.3g}")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# HTML

def _html_table(header: list[str], rows: list[list[str]], chosen: str | None = None) -> str:
    """A table of plain-text cells; the row whose first cell is `chosen` is highlighted."""
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(("<tr class=\"chosen\">" if row[0] == chosen else "<tr>")
                   + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{escape(PLOT_TITLES[name])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(PLOT_TITLES[name])}</figcaption></figure>")


def _recommendation_html(results: dict) -> str:
    advice = results["recommendation"]
    items = []
    for reason in advice["reasons"]:
        evidence = ", ".join(f"<code>{escape(path)}</code> = {escape(_evidence_value(_resolve(results, path)))}"
                             for path in reason["evidence"])
        items.append(f"<li>{escape(reason['text'])}<div class=\"evidence\">evidence: {evidence}</div></li>")
    excluded = "".join(f"<li><strong>{escape(name)}</strong>: {escape(why)}</li>"
                       for name, why in advice["excluded"].items())
    return (f'<section class="recommendation"><h2>Recommendation: {escape(advice["strategy"])}</h2>'
            f"<ol>{''.join(items)}</ol>" + (f"<h3>Excluded</h3><ul>{excluded}</ul>" if excluded else "")
            + "</section>")


def _answer_cell(answer: dict) -> str:
    """One strategy's answer with its scores and, folded away, the passages it retrieved."""
    scores = f"F1 {answer['f1']:.2f} · EM {answer['exact_match']:.0f} · {format_seconds(answer['latency_s'])}"
    cell = f"{escape(answer['answer'])}<div class=\"score\">{escape(scores)}</div>"
    if answer["passages"]:
        passages = "".join(f"<div class=\"passage\"><strong>{escape(passage['source'])}</strong>\n"
                           f"{escape(passage['text'])}</div>" for passage in answer["passages"])
        cell += f"<details><summary>{len(answer['passages'])} passages</summary>{passages}</details>"
    return cell


def _questions_html(results: dict) -> str:
    names = list(results["strategies"])
    head = "".join(f"<th>{escape(cell)}</th>" for cell in ["id", "question", "reference", *names])
    rows = []
    for row in results["per_question"]:
        answers = "".join(f"<td>{_answer_cell(row['answers'][name])}</td>" if name in row["answers"] else "<td>—</td>"
                          for name in names)
        rows.append(f"<tr><td>{escape(str(row['id']))}</td><td>{escape(row['question'])}</td>"
                    f"<td>{escape(row['reference'])}</td>{answers}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_html(results: dict, plots: dict[str, bytes]) -> str:
    """The whole report as one self-contained HTML page."""
    config, chosen = results["config"], results["recommendation"]["strategy"]
    title = f"ragtune compare: {config['model']} on {config['docs']}"
    figures = "".join(_figure(name, png) for name, png in plots.items() if name != "knowledge_update")
    sections = [f"<h1>{escape(title)}</h1>", _recommendation_html(results),
                "<h2>Summary</h2>", _html_table(*summary_table(results), chosen=chosen),
                "<h2>Significance</h2>", _html_table(*significance_table(results)),
                "<h2>Plots</h2>", figures]
    if results.get("knowledge_update"):
        update = results["knowledge_update"]
        sections += ["<h2>Knowledge update</h2>",
                     (f"<p>{update['new_documents']} new documents, {update['new_questions']} new questions, "
                      f"{update['old_questions']} old questions.</p>"),
                     _html_table(*knowledge_update_table(results), chosen=chosen)]
        if "knowledge_update" in plots:
            sections.append(_figure("knowledge_update", plots["knowledge_update"]))
    sections += ["<h2>Constraints and configuration</h2>", _html_table(*settings_table(results)),
                 f"<h2>Questions ({len(results['per_question'])})</h2>", _questions_html(results)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")


# Markdown

def _markdown_cell(text: str) -> str:
    """A table cell: one line, pipes escaped, HTML made inert."""
    return escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_markdown_cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in rows]


def _markdown_questions(results: dict) -> list[str]:
    names = list(results["strategies"])
    rows = []
    for row in results["per_question"][:MARKDOWN_QUESTIONS]:
        answers = [f"{row['answers'][name]['answer']} (F1 {row['answers'][name]['f1']:.2f})"
                   if name in row["answers"] else "—" for name in names]
        rows.append([str(row["id"]), row["question"], row["reference"], *answers])
    return _markdown_table(["id", "question", "reference", *names], rows)


def render_markdown(results: dict, plot_names: list[str]) -> str:
    """The report in Markdown, linking the PNG plots in plots/ and showing the first questions."""
    advice = results["recommendation"]
    lines = [f"# ragtune compare: {_markdown_cell(results['config']['model'])}", "",
             f"## Recommendation: {_markdown_cell(advice['strategy'])}", ""]
    for number, reason in enumerate(advice["reasons"], 1):
        evidence = ", ".join(f"`{path}`" for path in reason["evidence"])
        lines.append(f"{number}. {_markdown_cell(reason['text'])} (evidence: {evidence})")
    if advice["excluded"]:
        lines += ["", "Excluded:", ""] + [f"- {_markdown_cell(name)}: {_markdown_cell(why)}"
                                          for name, why in advice["excluded"].items()]
    lines += ["", "## Summary", "", *_markdown_table(*summary_table(results))]
    lines += ["", "## Significance", "", *_markdown_table(*significance_table(results))]
    if results.get("knowledge_update"):
        lines += ["", "## Knowledge update", "", *_markdown_table(*knowledge_update_table(results))]
    lines += ["", "## Plots", ""] + [f"- [{PLOT_TITLES[name]}](plots/{name}.png)" for name in plot_names]
    lines += ["", "## Constraints and configuration", "", *_markdown_table(*settings_table(results))]
    shown = min(MARKDOWN_QUESTIONS, len(results["per_question"]))
    lines += ["", f"## Questions (first {shown} of {len(results['per_question'])})", "", *_markdown_questions(results)]
    return "\n".join(lines) + "\n"
