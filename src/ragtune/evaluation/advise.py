"""`ragtune advise`: the verdict and report of a finished comparison, derived again from its stored answers under
other constraints or another deciding metric, and with the arena's latest human votes. No model is loaded and
nothing is generated."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ragtune.arena.comparison import with_human_evaluation
from ragtune.config import validation_problems
from ragtune.errors import RagtuneError
from ragtune.evaluation.analysis import analyse
from ragtune.evaluation.experiment import check_names
from ragtune.evaluation.report import write_report
from ragtune.evaluation.results import Constraints, Results


def readvise(directory: Path, *, metric: str | None = None, constraints: dict | None = None) -> Results:
    """Load DIRECTORY/results.json, apply the given constraints over the stored ones (None values keep them) and
    the deciding metric (None: the stored one when the user had chosen it, else chosen again), re-derive the
    verdict and rewrite the report in DIRECTORY."""
    results = Results.load(Path(directory))
    check_names(strategies=[], method=None, metric=metric)
    changed = {key: value for key, value in (constraints or {}).items() if value is not None}
    try:
        merged = Constraints.model_validate({**results.constraints.model_dump(), **changed})
    except ValidationError as exc:
        raise RagtuneError(f"invalid constraints: {validation_problems(exc)}", "correct the named options") from exc
    if merged.budget_per_1000 is not None and not results.is_priced():
        raise RagtuneError("a budget per 1,000 questions needs a price per machine hour, and this comparison had none",
                           "rerun `ragtune compare --resume --price-per-hour P` (it reuses every stored answer)")
    requested = metric or (results.metric_choice.requested if results.metric_choice else None)
    analysed = analyse(with_human_evaluation(results, Path(directory)), merged, requested)
    write_report(analysed, Path(directory))
    return analysed
