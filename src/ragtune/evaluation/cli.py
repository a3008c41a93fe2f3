"""`ragtune eval` (one strategy on one test set) and `ragtune compare` (every strategy, a report and advice)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ragtune.cli import JsonOption, ProjectOption, _print_json, _project, _user_errors, console, err_console


@_user_errors
def eval_command(test: Path = typer.Option(..., "--test", help="Q&A JSONL: question, answer (optional id, "
                                                               "choices, source)."),
                 strategy: str = typer.Option(..., help="base | rag | ft | ft-docs | ft+rag | raft"),
                 model: Optional[str] = typer.Option(None, help="Generator; a fine-tuned RUN_DIR for ft strategies."),
                 k: Optional[int] = typer.Option(None, "--k", help="Passages retrieved (strategies with retrieval)."),
                 seed: int = typer.Option(0, help="Seed of the bootstrap intervals."),
                 project: Path = ProjectOption, as_json: bool = JsonOption):
    """Answer a test set with one strategy and score it (metrics with 95% bootstrap intervals)."""
    from ragtune.evaluation.runner import evaluate
    from ragtune.evaluation.test_set import load_test_set
    from ragtune.progress import rich_progress
    from ragtune.strategies import get_strategy

    chosen = get_strategy(strategy)
    questions = load_test_set(test)
    proj = _project(project, existing=True)
    if as_json:
        result = evaluate(proj, questions, chosen, model=model, k=k, seed=seed)
        _print_json(result.to_dict())
        return
    with rich_progress(err_console) as progress:
        result = evaluate(proj, questions, chosen, model=model, k=k, seed=seed, progress=progress)
    table = Table("metric", "value", "95% interval", title=f"{chosen.name} on {result.n} questions")
    for name, metric in result.metrics.items():
        table.add_row(name, f"{metric['value']:.3f}", f"[{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]")
    console.print(table)
    latency = result.latency
    console.print(f"latency p50 {latency['p50_s']:.2f} s, p95 {latency['p95_s']:.2f} s, "
                  f"{latency['tokens_per_second']:.1f} tokens/s, "
                  f"{result.usage['prompt_tokens_per_question']:.0f} prompt tokens per question")


@_user_errors
def compare(docs: Optional[Path] = typer.Option(None, help="Documents (file or directory) to ingest."),
            train: Optional[Path] = typer.Option(None, help="Q&A JSONL the fine-tuned strategies learn from "
                                                            "(default: questions synthesized from --docs)."),
            synthesize: Optional[int] = typer.Option(None, help="Questions to synthesize from --docs: the whole set "
                                                                "without --train (default 150; 60 with --quick); "
                                                                "with --train, added to it and scored apart."),
            test: Optional[Path] = typer.Option(None, help="Held-out Q&A JSONL (default: a split of --train)."),
            strategies: Optional[str] = typer.Option(None, help="Comma-separated: base,rag,ft,ft-docs,ft+rag,raft."),
            method: Optional[str] = typer.Option(None, help="Fine-tuning method of the ft strategies (default lora)."),
            model: Optional[str] = typer.Option(None, help="Base generator (default smollm2-135m)."),
            experiment: Optional[Path] = typer.Option(None, help="Experiment YAML; flags override it."),
            quick: Optional[bool] = typer.Option(None, "--quick/--full-budget", help="A small budget: few steps "
                                                                                     "and questions."),
            update_split: Optional[float] = typer.Option(None, help="Hold back this share of documents to measure "
                                                                    "knowledge updates."),
            price_per_hour: Optional[float] = typer.Option(None, help="Machine price per hour, for costs."),
            latency_target: Optional[float] = typer.Option(None, help="Constraint: p95 latency in seconds."),
            budget_per_1000: Optional[float] = typer.Option(None, help="Constraint: cost per 1,000 questions."),
            knowledge_changes: Optional[str] = typer.Option(None, help="never | monthly | weekly | daily."),
            must_cite: Optional[bool] = typer.Option(None, "--must-cite/--no-must-cite",
                                                     help="Answers must cite sources."),
            seed: Optional[int] = typer.Option(None, help="Seed for splits, training and intervals."),
            metric: Optional[str] = typer.Option(None, help="The deciding metric (default: chosen from the test "
                                                            "set's answers, e.g. f1, rougeL, chrf, mc_accuracy)."),
            out: Path = typer.Option(Path("ragtune-compare"), help="Output directory (report, results, runs)."),
            resume: bool = typer.Option(False, "--resume", help="Reuse the finished stages in --out."),
            as_json: bool = JsonOption):
    """Build and evaluate RAG, fine-tuning and both on the same questions; report and recommend."""
    from ragtune.evaluation.compare import run_compare
    from ragtune.evaluation.experiment import load_experiment

    overrides = {"docs": str(docs) if docs else None, "train": str(train) if train else None,
                 "synthesize": synthesize,
                 "test": str(test) if test else None, "method": method, "model": model, "quick": quick,
                 "update_split": update_split, "price_per_hour": price_per_hour, "latency_p95_s": latency_target,
                 "budget_per_1000": budget_per_1000, "knowledge_changes": knowledge_changes,
                 "must_cite": must_cite, "seed": seed, "primary_metric": metric,
                 "strategies": [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None}
    resolved = load_experiment(experiment, overrides)
    results = run_compare(resolved, out, resume=resume, console=None if as_json else err_console)
    show_results(results, out, as_json)


@_user_errors
def advise(directory: Path = typer.Argument(..., help="The --out directory of a finished `ragtune compare`."),
           metric: Optional[str] = typer.Option(None, help="The deciding metric (default: the comparison's own "
                                                           "choice when it was given, else chosen from the answers)."),
           latency_target: Optional[float] = typer.Option(None, help="Constraint: p95 latency in seconds."),
           budget_per_1000: Optional[float] = typer.Option(None, help="Constraint: cost per 1,000 questions."),
           knowledge_changes: Optional[str] = typer.Option(None, help="never | monthly | weekly | daily."),
           must_cite: Optional[bool] = typer.Option(None, "--must-cite/--no-must-cite",
                                                    help="Answers must cite sources."),
           as_json: bool = JsonOption):
    """Re-derive the verdict and the report of a finished comparison from its stored answers, in seconds:
    another deciding metric or other constraints, no model loaded and nothing generated again."""
    from ragtune.evaluation.advise import readvise

    results = readvise(directory, metric=metric, constraints={
        "latency_p95_s": latency_target, "budget_per_1000": budget_per_1000,
        "knowledge_changes": knowledge_changes, "must_cite": must_cite})
    show_results(results, directory, as_json)


def show_results(results, out: Path, as_json: bool) -> None:
    """The results as JSON, or the summary table, the verdict and the report's path."""
    if as_json:
        _print_json(results.model_dump(mode="json"))
        return
    print_comparison(results)
    console.print(f"report: {out.resolve() / 'report.html'}")


def print_comparison(results) -> None:
    """The summary table and the verdict in the terminal."""
    from ragtune.evaluation.advice import format_interval
    from ragtune.evaluation.plots import plotted_metric
    from ragtune.evaluation.registry import metric_label

    metric = plotted_metric(results)
    table = Table("strategy", f"{metric_label(metric)} [95% CI]", "exact match", "p50 s", "prompt tok", "train s",
                  title=f"{results.test_set.n} test questions")
    for name, entry in results.strategies.items():
        measure, exact, train = entry.metrics.get(metric), entry.metrics.get("exact_match"), entry.cost.train_seconds
        table.add_row(name, "-" if measure is None else format_interval(measure),
                      "-" if exact is None else f"{exact.value:.3f}", f"{entry.latency.p50_s:.2f}",
                      f"{entry.cost.prompt_tokens_per_question:.0f}", "-" if train is None else f"{train:.0f}")
    console.print(table)
    advice = results.recommendation
    color = "green" if advice.verdict == "recommended" else "yellow"
    console.print(f"[bold {color}]{advice.headline}[/]")
    console.print(f"  deciding metric: {results.metric_choice.reason}")
    for reason in advice.reasons:
        console.print(f"  - {reason.text}")
    if advice.what_would_decide:
        console.print("[bold]what would decide it:[/]")
        for reason in advice.what_would_decide:
            console.print(f"  - {reason.text}")
