"""Open what a server serves: the project (or a comparison's), its models and the answer log."""

from __future__ import annotations

from pathlib import Path

from ragtune.arena.battles import ComparedAnswers
from ragtune.arena.store import ArenaStore
from ragtune.knowledge.storage import LOCAL_STORE, records_location
from ragtune.serve.answer_log import AnswerLog
from ragtune.serve.app import ServerState
from ragtune.serve.catalog import ModelCatalog, discover_models, read_comparison
from ragtune.workspace import Workspace


def open_server_state(project_dir: Path, *, from_compare: Path | None = None, api_key: str | None = None,
                      record_answers: bool = True, max_loaded: int = 2, max_tokens_cap: int = 1024,
                      allowed_hosts: list[str] | None = None, cors_origins: list[str] = (),
                      repetition_penalty: float | None = None) -> ServerState:
    """The project at `project_dir` with its fine-tuning runs, or with `from_compare` the project and runs a
    comparison wrote there (its measured quality and recommendation included); the embedder and indexes are
    loaded now, so the first request does not pay for them."""
    from ragtune.project import Project

    comparison, overrides = None, None
    if from_compare is not None:
        from_compare = from_compare.resolve()
        comparison = read_comparison(from_compare)
        project_dir, runs_dir = from_compare / "project", from_compare / "runs"
        # the model and passages the comparison measured (its project's file holds the defaults)
        overrides = {"models": {"generator": comparison["config"]["model"]},
                     "retrieval": {"k": comparison["config"]["k"]}, **LOCAL_STORE}
    Workspace.require(project_dir, " (or --from-compare DIR, where `ragtune compare` wrote)")
    project = Project(project_dir, overrides)
    if from_compare is None:
        runs_dir = project.workspace.runs_dir
    run_dirs = [path for path in runs_dir.iterdir() if path.is_dir()] if runs_dir.is_dir() else []
    models = discover_models(project.config.models.generator, run_dirs, comparison)
    project.retriever.search("warm-up", k=1)
    records = records_location(project.workspace)
    log = AnswerLog(records) if record_answers else None
    battles_possible = comparison and len(comparison["strategies"]) > 1 and comparison.get("per_question")
    compared = ComparedAnswers(from_compare) if battles_possible else None  # else live battles only
    return ServerState(project, ModelCatalog(project, models, max_loaded=max_loaded), api_key, log, max_tokens_cap,
                       repetition_penalty, allowed_hosts, list(cors_origins),
                       arena=ArenaStore(records), compared=compared)
