"""The health report for people: a Rich terminal summary and a self-contained HTML dashboard with plots."""

from __future__ import annotations

import base64
import html
import json
import time
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ragtune.evaluation.plots import new_figure, render_png
from ragtune.health.findings import HealthReport

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green"}
TIME_PLOTS = {  # title, y label, series shown together
    "Answers served": ("answers", ["answers"]),
    "Latency": ("seconds", ["latency_p50_s", "latency_p95_s"]),
    "Retrieval and feedback": ("share of answers", ["weak_share", "no_citation_share", "thumbs_down_share"]),
    "Knowledge-base drift against the baseline": ("MMD²", ["drift_mmd"]),
    "Probe-set recall": ("recall@k", ["probe_recall"]),
}


def print_report(report: HealthReport, console: Console, examples: int = 3) -> None:
    """Counts, then each finding (worst first) with its evidence, examples and what to do, then key numbers."""
    data = report.to_dict()
    counts = data["counts"]
    console.print(f"[bold]health of {escape(data['project'])}[/]: [{STYLE[data['status']]}]{data['status']}[/] — "
                  f"{counts['sources']} sources, {counts['documents']} documents, {counts['chunks']} chunks")
    if not data["findings"]:
        console.print("[green]no findings: the knowledge base looks healthy[/]")
    for finding in data["findings"]:
        console.print(f"[{STYLE[finding['severity']]}]{finding['severity']:>7}[/] [dim]{finding['area']}[/] "
                      f"{escape(finding['title'])}")
        for example in finding["examples"][:examples]:
            console.print(f"          [dim]·[/] {escape(example)}")
        if len(finding["examples"]) > examples:
            console.print(f"          [dim]· … {len(finding['examples']) - examples} more (--json shows them)[/]")
        console.print(f"          [green]→[/] {escape(finding['action'])}")
    table = Table("measurement", "value", title="measurements")
    for label, value in _headline_numbers(data["metrics"]):
        table.add_row(label, value)
    console.print(table)


def _headline_numbers(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    traffic, coverage, drift = metrics.get("traffic", {}), metrics.get("coverage", {}), metrics.get("drift", {})
    rows.append(("answers served", str(traffic.get("answers", 0))))
    if traffic.get("answers"):
        rows.append(("latency p50 / p95", f"{traffic['latency_p50_s']:.2f} s / {traffic['latency_p95_s']:.2f} s"))
        rows.append(("answers citing nothing", f"{traffic['no_citation_share']:.0%}"))
        if traffic["thumbs_down_share"] is not None:
            rows.append(("thumbs-down (of rated)", f"{traffic['thumbs_down_share']:.0%} of {traffic['rated']}"))
    if coverage.get("weak_share") is not None:
        rows.append(("questions with no close passage", f"{coverage['weak_share']:.0%} of "
                                                        f"{coverage['questions_checked']}"))
    for key, value in coverage.items():
        if key.startswith("recall_at_"):
            rows.append((f"probe {key.replace('_', ' ')}", f"{value:.0%} ({coverage['questions']} questions)"))
    rows.append(("snapshots", str(drift.get("snapshots", 0))))
    if "mmd" in drift:
        rows.append(("drift since baseline (MMD p)", f"{drift['mmd']['p_value']:.3f}"))
    lengths = metrics.get("content", {}).get("token_lengths")
    if lengths:
        rows.append(("chunk tokens p5 / p50 / p95", f"{lengths['p5']:.0f} / {lengths['p50']:.0f} / "
                                                    f"{lengths['p95']:.0f}"))
    return rows


def dashboard_html(report: HealthReport) -> str:
    """A self-contained page (inline PNG plots, no scripts) with the findings, the measurements and the plots."""
    data = report.to_dict()
    e = html.escape
    findings = "".join(
        f"<section class='finding {f['severity']}'><h3><span class='badge'>{f['severity']}</span> "
        f"<span class='area'>{e(f['area'])}</span> {e(f['title'])}</h3><p class='action'>→ {e(f['action'])}</p>"
        + (f"<details><summary>{len(f['examples'])} examples</summary><ul>"
           + "".join(f"<li>{e(x)}</li>" for x in f["examples"]) + "</ul></details>" if f["examples"] else "")
        + (f"<p class='evidence'>{e(json.dumps(f['evidence'], default=str))}</p>" if f["evidence"] else "")
        + "</section>" for f in data["findings"]) or "<p>No findings: the knowledge base looks healthy.</p>"
    numbers = "".join(f"<tr><td>{e(label)}</td><td>{e(value)}</td></tr>"
                      for label, value in _headline_numbers(data["metrics"]))
    plots = "".join(f"<figure><img alt='{e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                    f"</figure>" for title, png in _plots(data))
    generated = time.strftime("%Y-%m-%d %H:%M", time.localtime(data["generated_at"]))
    counts = data["counts"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>ragtune health</title><style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
.finding{{border-left:5px solid #888;padding:.3em .8em;margin:.8em 0;background:#fafafa}}
.finding h3{{font-size:1em;margin:.3em 0}} .error{{border-color:#c0392b}} .warning{{border-color:#e6a100}}
.info{{border-color:#2980b9}} .badge{{text-transform:uppercase;font-size:.75em;padding:.1em .4em;border-radius:3px;
background:#eee}} .area{{color:#666;font-weight:normal}} .action{{margin:.3em 0}} .evidence{{color:#666;
font-size:.85em;overflow-wrap:anywhere}} li{{overflow-wrap:anywhere}} img{{max-width:100%}} table{{border-collapse:
collapse}} td{{border-bottom:1px solid #ddd;padding:.2em 1em .2em 0}} .status-{data['status']}{{font-weight:bold}}
</style></head><body><h1>Health of {e(data['project'])}</h1>
<p>Status: <span class="status-{data['status']}">{data['status']}</span> · {counts['sources']} sources,
{counts['documents']} documents, {counts['chunks']} chunks · generated {generated}</p>
<h2>Findings</h2>{findings}<h2>Measurements</h2><table>{numbers}</table><h2>Over time</h2>
{plots or "<p>No history yet: plots appear once answers are served and ingests add snapshots.</p>"}
</body></html>"""


def _plots(data: dict) -> list[tuple[str, bytes]]:
    plots = []
    series = data["series"]
    for title, (ylabel, names) in TIME_PLOTS.items():
        shown = [name for name in names if series.get(name)]
        if not shown:
            continue
        figure = new_figure(9, 2.8)
        axes = figure.add_subplot()
        for name in shown:
            points = series[name]
            axes.plot([datetime.fromtimestamp(t) for t, _ in points], [v for _, v in points], marker="o",
                      label=name.replace("_", " "))
        axes.set_title(title)
        axes.set_ylabel(ylabel)
        axes.legend(loc="best", fontsize="small")
        figure.autofmt_xdate()
        plots.append((title, render_png(figure)))
    lengths = data["metrics"].get("content", {}).get("token_lengths")
    if lengths:
        figure = new_figure(9, 2.8)
        axes = figure.add_subplot()
        edges, counts = lengths["histogram"]["edges"], lengths["histogram"]["counts"]
        axes.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge")
        axes.set_title("Chunk lengths")
        axes.set_xlabel("tokens")
        axes.set_ylabel("chunks")
        plots.append(("Chunk lengths", render_png(figure)))
    topics = data["metrics"].get("drift", {}).get("topics")
    if topics:
        figure = new_figure(9, 2.8)
        axes = figure.add_subplot()
        positions = range(len(topics["shares_baseline"]))
        axes.bar([p - 0.2 for p in positions], topics["shares_baseline"], width=0.4, label="baseline")
        axes.bar([p + 0.2 for p in positions], topics["shares_current"], width=0.4, label="latest")
        axes.set_title("Topic shares (clusters of the baseline)")
        axes.set_xlabel("topic")
        axes.set_ylabel("share of chunks")
        axes.legend(fontsize="small")
        plots.append(("Topic shares", render_png(figure)))
    return plots
