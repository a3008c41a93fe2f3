"""Figures of a comparison as PNG bytes: quality, quality against cost, latency, training curves, knowledge update,
human preference.

Figures are drawn on the Agg canvas without pyplot, so no global figure state is kept; each is closed
(its canvas released) once rendered. PNGs carry no software or time metadata, so the same results give the
same bytes.
"""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ragtune.evaluation.advice import format_seconds
from ragtune.evaluation.registry import metric_label
from ragtune.evaluation.results import Results

DPI = 100
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan")


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def render_png(figure: Figure) -> bytes:
    """Render and release the figure."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    figure.clear()
    return buffer.getvalue()


def _colors(results: Results) -> dict[str, str]:
    """One color per strategy, the same in every figure."""
    return {name: COLORS[index % len(COLORS)] for index, name in enumerate(results.strategies)}


def plotted_metric(results: Results) -> str:
    """The deciding metric, or the first candidate when no metric could decide."""
    return results.deciding_metric or results.metric_choice.candidates[0]


def quality_plot(results: Results) -> bytes:
    """Bars of the deciding metric and the next candidate per strategy, with confidence-interval error bars."""
    first = plotted_metric(results)
    following = [name for name in results.metric_choice.candidates if name != first]
    metrics = [first, *following[:1]]
    colors = _colors(results)
    figure = new_figure(4 * len(metrics) + 1, 4)
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        measured = {name: s.metrics[metric] for name, s in results.strategies.items() if metric in s.metrics}
        values = [m.value for m in measured.values()]
        errors = [[m.value - m.ci_low for m in measured.values()], [m.ci_high - m.value for m in measured.values()]]
        axes.bar(list(measured), values, yerr=errors, capsize=4, color=[colors[name] for name in measured])
        deciding = " (deciding)" if metric == results.deciding_metric else ""
        axes.set_title(f"{metric_label(metric)}{deciding}, 95% intervals")
        axes.set_ylim(0, max([1.0, *(m.ci_high for m in measured.values())]))
        axes.tick_params(axis="x", labelrotation=30)
        axes.grid(axis="y", alpha=0.3)
    return render_png(figure)


def quality_cost_plot(results: Results) -> bytes:
    """The deciding metric against cost per 1,000 questions (machine minutes without a price per hour); marker
    area grows with training time."""
    metric, colors, priced = plotted_metric(results), _colors(results), results.is_priced()
    figure = new_figure(7, 4.5)
    axes = figure.add_subplot()
    for name, strategy in results.strategies.items():
        if metric not in strategy.metrics:
            continue
        measure, cost = strategy.metrics[metric], strategy.cost
        x = cost.cost_per_1000_questions if priced else cost.machine_seconds_per_1000_questions / 60
        y, train = measure.value, cost.train_seconds
        axes.errorbar(x, y, yerr=[[y - measure.ci_low], [measure.ci_high - y]], color=colors[name], capsize=3)
        axes.scatter(x, y, s=30 + 8 * (train or 0) ** 0.5, color=colors[name], alpha=0.8, zorder=3)
        label = name if train is None else f"{name} (train {format_seconds(train)})"
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    axes.margins(x=0.25, y=0.1)
    axes.set_xlabel("cost per 1,000 questions ($)" if priced else "machine minutes per 1,000 questions")
    axes.set_ylabel(metric_label(metric))
    axes.set_title(f"{metric_label(metric)} against cost (marker size: training time)")
    axes.grid(alpha=0.3)
    return render_png(figure)


def latency_plot(results: Results) -> bytes | None:
    """Box plots of the per-question latency of each strategy; None when no latency was sampled."""
    samples = {name: strategy.latency.samples_s for name, strategy in results.strategies.items()
               if strategy.latency.samples_s}
    if not samples:
        return None
    figure = new_figure(7, 4)
    axes = figure.add_subplot()
    boxes = axes.boxplot(list(samples.values()), patch_artist=True)
    axes.set_xticks(range(1, len(samples) + 1), list(samples))
    colors = _colors(results)
    for box, name in zip(boxes["boxes"], samples):
        box.set_facecolor(colors[name])
        box.set_alpha(0.6)
    axes.set_ylabel("seconds per question")
    axes.set_title("Latency")
    axes.tick_params(axis="x", labelrotation=30)
    axes.grid(axis="y", alpha=0.3)
    return render_png(figure)


def training_curves_plot(results: Results) -> bytes | None:
    """Training and validation loss against step for every strategy with a training curve; None if none has."""
    curves = {name: s.training_curve for name, s in results.strategies.items() if s.training_curve}
    if not curves:
        return None
    colors = _colors(results)
    figure = new_figure(7, 4)
    axes = figure.add_subplot()
    for name, curve in curves.items():
        for key, style, kind in (("loss", "-", "training"), ("eval_loss", "o--", "validation")):
            points = [(point.step, getattr(point, key)) for point in curve if getattr(point, key) is not None]
            if points:
                axes.plot(*zip(*points), style, color=colors[name], label=f"{name} {kind}", markersize=4)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title("Training curves")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return render_png(figure)


def knowledge_update_plot(results: Results) -> bytes | None:
    """Grouped bars per strategy: new-question, old-before and old-after scores, absorb time annotated."""
    update = results.knowledge_update
    if not update or not update.strategies:
        return None
    entries = update.strategies
    metric = plotted_metric(results)
    figure = new_figure(7, 4.5)
    axes = figure.add_subplot()
    groups = (("new", "new questions"), ("old_before", "old, before"), ("old_after", "old, after"))
    width = 0.8 / len(groups)
    for offset, (key, label) in enumerate(groups):
        positions = [index + (offset - 1) * width for index in range(len(entries))]
        # a metric not measured is left out (NaN draws no bar), never drawn as a score of 0
        axes.bar(positions, [getattr(entry, key).get(metric, math.nan) for entry in entries.values()], width,
                 label=label)
    for index, entry in enumerate(entries.values()):
        top = max(getattr(entry, key).get(metric, 0.0) for key, _ in groups)
        axes.annotate(f"absorb {format_seconds(entry.absorb_seconds)}", (index, top), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=8)
    axes.set_xticks(range(len(entries)), list(entries))
    axes.set_ylabel(metric_label(metric))
    axes.set_ylim(0, 1.1)
    axes.set_title(f"Knowledge update: {update.new_documents} new documents")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return render_png(figure)


def human_ratings_plot(results: Results) -> bytes | None:
    """The arena's ratings, best on top, with their 95% bootstrap intervals."""
    human = results.human_evaluation
    if human is None:
        return None
    colors = _colors(results)
    ratings = list(reversed(human.ratings))
    figure = new_figure(6, 1 + 0.5 * len(ratings))
    axes = figure.add_subplot(1, 1, 1)
    for row, rating in enumerate(ratings):
        axes.errorbar(rating.score, row, xerr=[[rating.score - rating.ci_low], [rating.ci_high - rating.score]],
                      fmt="o", capsize=4, color=colors.get(rating.strategy, "tab:gray"))
    axes.set_yticks(range(len(ratings)), [rating.strategy for rating in ratings])
    axes.set_title(f"Human preference: {human.votes} blind votes, 95% intervals")
    axes.set_xlabel("Bradley-Terry rating (Elo scale)")
    axes.grid(axis="x", alpha=0.3)
    return render_png(figure)


def all_plots(results: Results) -> dict[str, bytes]:
    """Every figure that applies to these results, by file stem."""
    figures = {"quality": quality_plot(results), "quality_vs_cost": quality_cost_plot(results),
               "latency": latency_plot(results), "training_curves": training_curves_plot(results),
               "knowledge_update": knowledge_update_plot(results), "human_ratings": human_ratings_plot(results)}
    return {name: png for name, png in figures.items() if png is not None}
