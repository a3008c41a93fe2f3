"""`ragtune compare`: build every strategy on the same data, evaluate them on the same held-out questions,
measure cost, latency and (optionally) the cost of new knowledge, recommend one, and write the report.

Stages, each saved when finished (`--resume` reuses them): split the questions → ingest the documents →
one fine-tuning run per objective the strategies need → one evaluation per strategy → knowledge update.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ragtune.arena.comparison import with_human_evaluation
from ragtune.child_process import run_in_child
from ragtune.data import DatasetSpec, parse_dataset_spec
from ragtune.evaluation.analysis import analyse
from ragtune.evaluation.costs import directory_mb, strategy_cost
from ragtune.evaluation.experiment import Experiment
from ragtune.evaluation.question_split import split_questions
from ragtune.evaluation.report import write_report
from ragtune.evaluation.results import SCHEMA_VERSION, Constraints, Results
from ragtune.evaluation.runner import evaluate
from ragtune.evaluation.stages import StageCache
from ragtune.evaluation.test_set import load_test_set
from ragtune.knowledge.storage import LOCAL_STORE
from ragtune.progress import ProgressReporter, SilentProgress, rich_progress
from ragtune.strategies import STRATEGIES, Strategy
from ragtune.training.artifacts import trained_weights_dir
from ragtune.training.callbacks import ProgressTaskCallback, read_log
from ragtune.training.recipe import resolve_recipe
from ragtune.training.runs import LOG_FILE, RECIPE_FILE, is_finished_run, partial_dir, read_metadata

if TYPE_CHECKING:
    from ragtune.training.finetune import FinetuneResult


def run_compare(experiment: Experiment, out_dir: Path, *, resume: bool = False, console: Console | None = None,
                train_in_child: bool = True) -> Results:
    """Run the experiment into `out_dir` and return the results (also written as results.json and reports).
    Each fine-tuning run is trained in a child process (see ragtune.child_process) unless `train_in_child` is
    False (tests that patch the project in this process)."""
    from ragtune.project import Project

    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = StageCache(out_dir, experiment.model_dump(), experiment.fingerprint(), resume=resume)
    strategies = [STRATEGIES[name] for name in experiment.strategies]
    objectives = list(dict.fromkeys(s.training_objective for s in strategies if s.training_objective))
    budget = experiment.effective_budget()
    with rich_progress(console) if console is not None else nullcontext(SilentProgress()) as progress:
        stages = progress.task("compare: stages", total=3 + len(objectives) + len(strategies)
                               + (1 if experiment.update_split else 0))
        synthetic, adding_synthetic = None, experiment.adds_synthetic()
        if experiment.train is None or adding_synthetic:
            synthetic = cache.run("synthesize", lambda: _synthesize(experiment, out_dir, progress))
        if experiment.train is None:
            experiment = experiment.model_copy(update={"train": synthetic["questions"]})
        split = cache.run("questions", lambda: split_questions(
            experiment, out_dir / "data", added=synthetic["splits"] if adding_synthetic else None))
        stages.advance()
        project = Project(out_dir / "project", {"models": {"generator": experiment.model},
                                                "generation": {"max_new_tokens": budget.max_new_tokens},
                                                "retrieval": {"k": experiment.k}, **LOCAL_STORE})
        try:
            index = cache.run("ingest", lambda: _ingest(project, split["documents"], progress))
            stages.advance()
            runs = {}
            for objective in objectives:
                runs[objective] = cache.run(f"train-{objective}", lambda o=objective: _train(
                    project, experiment, o, Path(split["train"]), out_dir / "runs" / o, progress,
                    in_child=train_in_child))
                stages.advance()
            test = load_test_set(Path(split["test"]))
            evaluations = {}
            for strategy in strategies:
                evaluations[strategy.name] = cache.run(f"eval-{strategy.name}", lambda s=strategy: evaluate(
                    project, test, s, model=_model_of(s, runs), k=experiment.k, seed=experiment.seed,
                    progress=progress).to_dict())
                stages.advance()
            synthetic_evaluations = {}
            if "synthetic_test" in split:  # added synthetic questions, scored apart from the human ones
                synthetic_test = load_test_set(Path(split["synthetic_test"]))
                for strategy in strategies:
                    synthetic_evaluations[strategy.name] = cache.run(
                        f"eval-{strategy.name}-synthetic", lambda s=strategy: evaluate(
                            project, synthetic_test, s, model=_model_of(s, runs), k=experiment.k,
                            seed=experiment.seed, progress=progress).to_dict())
            update = None
            if experiment.update_split:
                from ragtune.evaluation.knowledge_update import measure_knowledge_update

                update = cache.run("knowledge-update", lambda: measure_knowledge_update(
                    project, experiment, strategies, split, runs, evaluations, out_dir, progress,
                    train_in_child=train_in_child))
                stages.advance()
        finally:
            project.close()
        stages.advance()
    measured = _results(experiment, strategies, split, index, runs, evaluations, update, synthetic,
                        synthetic_evaluations)
    measured = with_human_evaluation(measured.model_copy(update={"resumed_stages": cache.reused}), out_dir)
    results = analyse(measured, constraints_of(experiment), experiment.primary_metric)
    write_report(results, out_dir)
    return results


def _synthesize(experiment: Experiment, out_dir: Path, progress: ProgressReporter) -> dict:
    """The question set, written from all the documents with the experiment's model (`ragtune data synthesize`) in
    a project of its own; its rows name their document (`source`) but not a chunk id, which belongs to that
    project's store."""
    import json

    from ragtune.project import Project
    from ragtune.synthesis import SynthesisOptions, synthesize

    project = Project(out_dir / "synthesis", {"models": {"generator": experiment.model}, **LOCAL_STORE})
    try:
        project.ingest([experiment.docs], progress=progress)
        result = synthesize(project, out_dir / "synthesis" / "questions.jsonl", SynthesisOptions(
            n=experiment.synthetic_questions(), seed=experiment.seed), progress=progress)
    finally:
        project.close()
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)

    def without_chunk_ids(sources: list[Path], name: str) -> str:
        rows = [json.loads(line) for source in sources for line in source.read_text(encoding="utf-8").splitlines()]
        (data_dir / name).write_text("".join(json.dumps({k: v for k, v in row.items() if k != "chunk_id"},
                                                        ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return str(data_dir / name)

    report = result.report
    return {"questions": without_chunk_ids([result.questions], "synthetic.jsonl"),
            # split by chunk (no chunk's questions straddle train and test), for adding to a human set
            "splits": {"train": without_chunk_ids([result.splits["train"], result.splits["val"]],
                                                  "synthetic.train.jsonl"),
                       "test": without_chunk_ids([result.splits["test"]], "synthetic.test.jsonl")},
            "model": report["model"], "planned": report["planned"], "kept": report["kept"],
            "pass_rate": report["pass_rate"], "report": str(out_dir / "synthesis" / "questions.report.md")}


def _ingest(project, documents: list[str], progress: ProgressReporter) -> dict:
    started = time.perf_counter()
    project.ingest(documents, progress=progress)
    seconds = time.perf_counter() - started
    state = project.workspace.state_dir
    size = sum(path.stat().st_size for path in state.glob("knowledge.sqlite*")) / 1024 ** 2
    counts = project.kb.store.counts()  # what is stored, also when an interrupted ingest was completed by this one
    return {"seconds": seconds, "index_mb": size + directory_mb(project.workspace.index_dir),
            "documents": counts["documents"], "chunks": counts["chunks"]}


def train_with_budget(project, experiment: Experiment, objective: str, train: list[DatasetSpec], run_dir: Path,
                      progress: ProgressReporter, *, description: str, base_model: str | None = None,
                      in_child: bool = True) -> FinetuneResult:
    """One fine-tuning run of `objective` within the experiment's budget, from `base_model` (default the
    experiment's model); an interrupted earlier attempt at `run_dir` is resumed instead. `in_child`: in a fresh
    process over the same project (what the run leaves in the allocator goes with it), else in `project`."""
    budget = experiment.effective_budget()
    steps = {"sft": budget.sft_max_steps, "cpt": budget.cpt_max_steps, "raft": budget.raft_max_steps}[objective]
    recipe = resolve_recipe(experiment.method, overrides={
        "model": base_model or experiment.model, "objective": objective, "max_steps": steps,
        "batch_size": budget.batch_size, "learning_rate": experiment.learning_rate, "seed": experiment.seed,
        "data": {"max_seq_length": budget.max_seq_length, "raft_k": experiment.raft_k, "seed": experiment.seed}})
    if is_finished_run(run_dir):  # it finished, but the comparison was killed before recording the stage
        from ragtune.training.finetune import FinetuneResult

        return FinetuneResult(run_dir, read_metadata(run_dir))
    if (partial_dir(run_dir) / RECIPE_FILE).is_file():
        train, recipe = None, None  # resumed from its checkpoint, with the data and recipe it started with
    if in_child:
        return run_in_child(_finetune_reopened, project.workspace.root, project.overrides, train, recipe, run_dir,
                            description, progress=progress)
    return _finetune(project, train, recipe, run_dir, description, progress=progress)


def _finetune(project, train: list[DatasetSpec] | None, recipe, run_dir: Path, description: str, *,
              progress: ProgressReporter) -> FinetuneResult:
    return project.finetune(train, recipe, out=run_dir, resume=recipe is None,
                            callbacks=[ProgressTaskCallback(progress, description)])


def _finetune_reopened(root: Path, overrides: dict, *args, progress: ProgressReporter) -> FinetuneResult:
    """`_finetune` in a child process: the project opened again from its directory."""
    from ragtune.project import Project

    project = Project(root, overrides)
    try:
        return _finetune(project, *args, progress=progress)
    finally:
        project.close()


def _train(project, experiment: Experiment, objective: str, train_file: Path, run_dir: Path,
           progress: ProgressReporter, *, in_child: bool) -> dict:
    """The run a strategy needs; returns its metadata with the training curve and the adapter's size."""
    train = [parse_dataset_spec("kb" if objective == "cpt" else str(train_file))]
    result = train_with_budget(project, experiment, objective, train, run_dir, progress,
                               description=f"training {objective} ({experiment.method})", in_child=in_child)
    curve = [{key: record[key] for key in ("step", "loss", "eval_loss") if key in record}
             for record in read_log(result.run_dir / LOG_FILE) if "loss" in record or "eval_loss" in record]
    return {**result.metadata, "run_dir": str(result.run_dir), "training_curve": curve,
            "adapter_mb": directory_mb(trained_weights_dir(result.run_dir))}


def _model_of(strategy: Strategy, runs: dict[str, dict]) -> str | None:
    return runs[strategy.training_objective]["run_dir"] if strategy.training_objective else None


def constraints_of(experiment: Experiment) -> Constraints:
    return Constraints(latency_p95_s=experiment.latency_p95_s, budget_per_1000=experiment.budget_per_1000,
                       knowledge_changes=experiment.knowledge_changes, must_cite=experiment.must_cite)


def _results(experiment: Experiment, strategies: list[Strategy], split: dict, index: dict, runs: dict,
             evaluations: dict, update: dict | None, synthetic: dict | None = None,
             synthetic_evaluations: dict | None = None) -> Results:
    """The measurements as typed results, before any metric is chosen, constraint applied or verdict given (see
    analysis.analyse). `synthetic_evaluations`: each strategy on the synthetic test questions added to a human
    set, kept apart from `evaluations`."""
    per_strategy = {}
    for strategy in strategies:
        evaluation = evaluations[strategy.name]
        run = runs.get(strategy.training_objective) if strategy.training_objective else None
        per_strategy[strategy.name] = {
            "description": strategy.description, "model": evaluation["model"], "uses_retrieval": strategy.uses_retrieval,
            "k": evaluation["k"], "metrics": evaluation["metrics"], "latency": evaluation["latency"],
            "cost": strategy_cost(evaluation, run, index if strategy.uses_retrieval else None,
                                  experiment.price_per_hour),
            "training_curve": run["training_curve"] if run else [],
            "synthetic_metrics": (synthetic_evaluations or {}).get(strategy.name, {}).get("metrics", {})}
    per_question = _side_by_side(evaluations)
    if synthetic is not None and "synthetic_test" in split:
        synthetic = {**synthetic, "added": True, "train_questions": split["synthetic_train_questions"],
                     "test_questions": split["synthetic_test_questions"]}
    return Results.model_validate({
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": experiment.seed,
        "config": {"model": experiment.model, "method": experiment.method, "k": experiment.k,
                   "docs": experiment.docs, "train": experiment.train, "test": experiment.test or "split of train",
                   "price_per_hour": experiment.price_per_hour, "quick": experiment.quick,
                   "budget": experiment.effective_budget().model_dump(),
                   "runs": {objective: run["run_dir"] for objective, run in runs.items()}},
        "test_set": {"n": split["test_questions"], "train_questions": split["train_questions"],
                     "synthetic": synthetic},
        "strategies": per_strategy,
        "per_question": per_question,
        "knowledge_update": update,
    })


def _side_by_side(evaluations: dict) -> list[dict]:
    """One row per question with every strategy's answer, passages, latency and scores."""
    names = list(evaluations)
    rows = []
    for index, first in enumerate(evaluations[names[0]]["per_question"]):
        answers = {}
        for name in names:
            row = evaluations[name]["per_question"][index]
            answers[name] = {"answer": row["answer"], "passages": row["passages"], "latency_s": row["latency_s"],
                             "scores": row["scores"]}
        rows.append({"id": first["id"], "question": first["question"], "reference": first["reference"],
                     "choices": first["choices"], "answers": answers})
    return rows
