"""The arena's votes on a comparison's strategies, as the comparison's human evaluation."""

from __future__ import annotations

from pathlib import Path

from ragtune.evaluation.results import HumanEvaluation, Results
from ragtune.workspace import STATE_DIR


def with_human_evaluation(results: Results, directory: Path) -> Results:
    """`results` with the leaderboard of the votes stored in the comparison's project (DIRECTORY/project) on its
    strategies, or with none when nobody has voted."""
    from ragtune.arena.ratings import leaderboard
    from ragtune.arena.store import ArenaStore

    database = Path(directory) / "project" / STATE_DIR / "knowledge.sqlite"
    evaluation = None
    if database.is_file():
        store = ArenaStore(database)
        try:
            strategies = list(results.strategies)
            judgements = [j for j in store.judgements() if j.left in strategies and j.right in strategies]
        finally:
            store.close()
        if judgements:
            evaluation = HumanEvaluation.model_validate(leaderboard(judgements, strategies, seed=results.seed).to_dict())
    return results.model_copy(update={"human_evaluation": evaluation})
