"""From measurements to a verdict: choose the deciding metric, test every pair of strategies on it (Holm-corrected)
and recommend.

The Holm family is every pair, not only the pairs the verdict ends up citing: which pairs those are (the best
against the rest, the tied ones against base) depends on the outcome of the tests themselves, and the report
shows every pair, so every pair is corrected for. `compare` runs this after measuring; `advise` runs it again on
stored results with other constraints or another metric, without answering a single question again."""

from __future__ import annotations

from ragtune.evaluation.advice import recommend
from ragtune.evaluation.metric_choice import choose_metric
from ragtune.evaluation.registry import METRICS, deciding_metrics
from ragtune.evaluation.results import Constraints, MetricChoice, PairedTest, Results
from ragtune.evaluation.statistics import compare_strategies


def analyse(results: Results, constraints: Constraints, metric: str | None = None) -> Results:
    """`results` with the metric choice, the paired tests on the deciding metric and the recommendation (re)made
    under `constraints`; `metric` names the deciding metric (None: chosen from the test set's answers)."""
    per_question = results.per_question
    by_metric = {candidate: results.per_question_scores(candidate) for candidate in deciding_metrics()}
    per_strategy = {name: {candidate: scores[name] for candidate, scores in by_metric.items()}
                    for name in results.strategies}
    choice = MetricChoice.model_validate(choose_metric([row.reference for row in per_question],
                                                       [bool(row.choices) for row in per_question],
                                                       per_strategy, metric))
    significance = [PairedTest.model_validate(entry) for entry in compare_strategies(
        per_strategy, choice.metric, binary=METRICS[choice.metric].binary, seed=results.seed)] if choice.metric else []
    analysed = results.model_copy(update={"metric_choice": choice, "significance": significance,
                                          "constraints": constraints, "recommendation": None})
    return analysed.model_copy(update={"recommendation": recommend(analysed, constraints)})
