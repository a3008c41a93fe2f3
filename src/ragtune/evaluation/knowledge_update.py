"""Knowledge update: after the first round, the held-back documents arrive and each strategy absorbs them its
own way — strategies with retrieval by an incremental ingest, fine-tuned ones by further training on the new
material — then each is measured on questions about the new documents and again on the old ones (forgetting)."""

from __future__ import annotations

import time
from pathlib import Path

from ragtune.data import parse_dataset_spec
from ragtune.evaluation.compare import train_with_budget
from ragtune.evaluation.experiment import Experiment
from ragtune.evaluation.runner import evaluate
from ragtune.evaluation.test_set import load_test_set
from ragtune.progress import ProgressReporter
from ragtune.strategies import Strategy


def measure_knowledge_update(project, experiment: Experiment, strategies: list[Strategy], split: dict, runs: dict,
                             evaluations: dict, out_dir: Path, progress: ProgressReporter, *,
                             train_in_child: bool = True) -> dict:
    """Absorb the held-back documents with every strategy and measure every metric on the new questions and
    again on the old ones (forgetting is their drop, derived for the deciding metric in the results)."""
    started = time.perf_counter()
    project.ingest(split["new_documents"], progress=progress)
    ingest_seconds = time.perf_counter() - started
    updated_runs = {objective: _further_training(project, experiment, objective, run, split, out_dir, progress,
                                                 in_child=train_in_child)
                    for objective, run in runs.items() if objective in ("sft", "cpt")}
    new_questions, old_questions = load_test_set(Path(split["test_new"])), load_test_set(Path(split["test"]))
    report = {}
    for strategy in strategies:
        absorb = _absorption(strategy, ingest_seconds, updated_runs)
        model = absorb.pop("model", None) or (runs[strategy.training_objective]["run_dir"]
                                              if strategy.training_objective else None)
        new = evaluate(project, new_questions, strategy, model=model, k=experiment.k, seed=experiment.seed,
                       progress=progress)
        old = evaluate(project, old_questions, strategy, model=model, k=experiment.k, seed=experiment.seed,
                       progress=progress)
        report[strategy.name] = {**absorb, "new": _means(new.metrics),
                                 "old_before": _means(evaluations[strategy.name]["metrics"]),
                                 "old_after": _means(old.metrics)}
    return {"new_documents": len(split["new_documents"]), "new_questions": len(new_questions),
            "old_questions": len(old_questions), "strategies": report}


def _further_training(project, experiment: Experiment, objective: str, run: dict, split: dict, out_dir: Path,
                      progress: ProgressReporter, *, in_child: bool) -> dict:
    """Continue the run on the new material: the new documents (cpt) or the questions about them (sft)."""
    data = ([parse_dataset_spec(path) for path in split["new_documents"]] if objective == "cpt"
            else [parse_dataset_spec(split["train_new"])])
    result = train_with_budget(project, experiment, objective, data, out_dir / "runs" / f"{objective}-update",
                               progress, description=f"absorbing new documents ({objective})",
                               base_model=run["run_dir"], in_child=in_child)
    return {"run_dir": str(result.run_dir), "train_seconds": result.metadata["train_seconds"],
            "peak_memory_gb": result.metadata["peak_memory_gb"]}


def _absorption(strategy: Strategy, ingest_seconds: float, updated_runs: dict) -> dict:
    if strategy.uses_retrieval:
        return {"absorb_seconds": ingest_seconds, "absorb_peak_memory_gb": None,
                "how": "incremental ingest of the new documents (the model is unchanged)"}
    if strategy.training_objective in updated_runs:
        run = updated_runs[strategy.training_objective]
        what = "the new documents" if strategy.training_objective == "cpt" else "the questions about them"
        return {"absorb_seconds": run["train_seconds"], "absorb_peak_memory_gb": run["peak_memory_gb"],
                "how": f"further {strategy.training_objective} training on {what}", "model": run["run_dir"]}
    return {"absorb_seconds": 0.0, "absorb_peak_memory_gb": None,
            "how": "nothing: the base model never sees the documents"}


def _means(metrics: dict) -> dict:
    """Every metric's mean, so that whichever metric decides the comparison is measured here too."""
    return {name: measure["value"] for name, measure in metrics.items()}
