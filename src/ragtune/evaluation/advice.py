"""Which strategy to use, derived from the measured numbers, or "inconclusive" with what would decide it.

Hard constraints (p95 latency, cost per 1,000 questions, citations) filter the strategies; the rest are ranked
by the deciding metric; those whose difference to the best is not significant after Holm's correction count as
tied. When nothing is separated from the best and the test set could not have detected a difference of
EQUIVALENCE_MARGIN, the verdict is "inconclusive", with the questions, training budget or model that would decide
it. Otherwise ties are broken by human preference (a strategy people rate significantly above the other tied ones
in blind arena votes), by whether a strategy is shown better than the base model, by how fast it absorbs new
documents (when knowledge changes weekly or daily), then by cost; people's significant preference also settles a
tie the metric leaves undecided, and a disagreement between people and the metric is stated with both numbers. Every reason quotes the numbers it rests on
and cites their paths in the results (see ragtune.evaluation.results.resolve).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ragtune.evaluation.registry import metric_label
from ragtune.evaluation.results import Constraints, Reason, Recommendation, Results, StrategyResult
from ragtune.evaluation.statistics import (POWER, SIGNIFICANCE_LEVEL, detectable_difference,
                                          fewest_questions_for_significance, required_questions)

FREQUENT_CHANGES = ("weekly", "daily")
ACCURACY_KEPT = 0.9  # an update keeps accuracy when its new-question score is at least 90% of the best one
EQUIVALENCE_MARGIN = 0.05  # strategies no test set of this power tells apart are equivalent, not undecided
WEAK_SCORE = 0.2  # a best score below this suggests a stronger base model
MAX_SIZING_LINES = 3


def format_interval(measure) -> str:
    """A metric with its confidence interval: "0.41 [0.35, 0.47]"."""
    return f"{measure.value:.2f} [{measure.ci_low:.2f}, {measure.ci_high:.2f}]"


def format_money(amount: float) -> str:
    """Dollars to the cent, two significant digits below a cent ("$1,250.00", "$0.50", "$0.0034")."""
    if amount == 0:
        return "$0"
    return f"${amount:,.2f}" if amount >= 0.01 else f"${amount:.2g}"


def format_seconds(seconds: float) -> str:
    """Seconds up to 100 s, then minutes, then hours."""
    if seconds < 100:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


@dataclass
class _Comparison:
    significant: bool
    text: str
    evidence: list[str]


def _reason(text: str, *evidence: str) -> Reason:
    return Reason(text=text, evidence=list(evidence))


def _verb(names: list[str], singular: str, plural: str) -> str:
    return singular if len(names) == 1 else plural


def _subject(names: list[str], singular: str, plural: str) -> str:
    """Names with a verb that agrees: "ft needs", "ft, base need"."""
    return f"{', '.join(names)} {_verb(names, singular, plural)}"


def _metric_path(name: str, metric: str) -> str:
    return f"strategies.{name}.metrics.{metric}"


def _cost_path(name: str, key: str) -> str:
    return f"strategies.{name}.cost.{key}"


def _update_path(name: str, key: str) -> str:
    return f"knowledge_update.strategies.{name}.{key}"


def _violations(name: str, strategy: StrategyResult, constraints: Constraints) -> dict[str, tuple[str, str]]:
    """The hard constraints a strategy breaks, keyed by constraint: (what is wrong, evidence path)."""
    broken = {}
    p95, cost = strategy.latency.p95_s, strategy.cost.cost_per_1000_questions
    if constraints.latency_p95_s is not None and p95 > constraints.latency_p95_s:
        broken["latency_p95_s"] = ((f"p95 latency {format_seconds(p95)} is above the "
                                    f"{format_seconds(constraints.latency_p95_s)} target"),
                                   f"strategies.{name}.latency.p95_s")
    if constraints.budget_per_1000 is not None and cost > constraints.budget_per_1000:
        broken["budget_per_1000"] = ((f"{format_money(cost)} per 1,000 questions is above the "
                                      f"{format_money(constraints.budget_per_1000)} budget"),
                                     _cost_path(name, "cost_per_1000_questions"))
    if constraints.must_cite and not strategy.uses_retrieval:
        broken["must_cite"] = ("it answers closed book (no retrieval), so it has no sources to cite",
                               f"strategies.{name}.uses_retrieval")
    return broken


def _nothing_passes(strategies: dict[str, StrategyResult], broken: dict[str, dict[str, tuple[str, str]]],
                    metric: str) -> Reason:
    """Say which constraint no strategy met (or that none met all at once) before recommending regardless."""
    unmet = [key for key in ("latency_p95_s", "budget_per_1000", "must_cite")
             if all(key in broken[name] for name in broken)]
    texts, evidence = [], []
    if "latency_p95_s" in unmet:
        fastest = min(broken, key=lambda name: strategies[name].latency.p95_s)
        texts.append(f"no strategy meets the p95 latency target (the fastest, {fastest}, takes "
                     f"{format_seconds(strategies[fastest].latency.p95_s)})")
        evidence.append(f"strategies.{fastest}.latency.p95_s")
    if "budget_per_1000" in unmet:
        cheapest = min(broken, key=lambda name: strategies[name].cost.cost_per_1000_questions)
        texts.append(f"no strategy fits the budget (the cheapest, {cheapest}, costs "
                     f"{format_money(strategies[cheapest].cost.cost_per_1000_questions)} per 1,000 questions)")
        evidence.append(_cost_path(cheapest, "cost_per_1000_questions"))
    if "must_cite" in unmet:
        texts.append("no strategy retrieves passages it could cite")
        evidence += [f"strategies.{name}.uses_retrieval" for name in broken]
    if not texts:
        texts.append("each constraint is met by some strategy, but none meets all of them at once")
        evidence += [path for name in broken for _, path in broken[name].values()]
    summary = "; ".join(texts)
    return _reason(f"Nothing passes the constraints: {summary}. Considering all of them on {metric_label(metric)} "
                   "anyway.", *evidence)


def _test_between(results: Results, metric: str, first: str, second: str) -> tuple[int, object] | None:
    """The recorded paired test of two strategies on the metric, with its index in results.significance."""
    for index, entry in enumerate(results.significance):
        if entry.metric == metric and {entry.a, entry.b} == {first, second}:
            return index, entry
    return None


def _family_size(results: Results, metric: str) -> int:
    return max(1, sum(entry.metric == metric for entry in results.significance))


def _compare(results: Results, metric: str, winner: str, other: str) -> _Comparison:
    """Whether `winner` beats `other` on the metric: the Holm-adjusted paired test when recorded, else CI overlap."""
    found = _test_between(results, metric, winner, other)
    if found:
        index, entry = found
        sign = 1 if entry.a == winner else -1
        low, high = sorted((sign * entry.ci_low, sign * entry.ci_high))
        text = (f"difference {sign * entry.mean_difference:+.2f}, CI [{low:+.2f}, {high:+.2f}], "
                f"{format_p(entry.p_value)}")
        if _family_size(results, metric) > 1:
            text += f", Holm-adjusted {format_p(entry.p_adjusted)}"
        return _Comparison(entry.significant, text, [f"significance[{index}]"])
    first, second = (results.strategies[name].metrics[metric] for name in (winner, other))
    overlap = second.ci_high >= first.ci_low and first.ci_high >= second.ci_low
    text = f"no paired test recorded; the confidence intervals {'overlap' if overlap else 'do not overlap'}"
    return _Comparison(not overlap, text, [_metric_path(winner, metric), _metric_path(other, metric)])


def _quality_reasons(results: Results, metric: str, ranked: list[str]) -> tuple[list[str], list[Reason]]:
    """The ranking by the deciding metric and, against the best, which strategies are tied with it."""
    label, best = metric_label(metric), ranked[0]
    measures = {name: results.strategies[name].metrics[metric] for name in ranked}
    if len(ranked) == 1:
        return ranked, [_reason(f"{best} is the only strategy considered: {label} {format_interval(measures[best])}.",
                                _metric_path(best, metric))]
    others = ", ".join(f"{measures[name].value:.2f} for {name}" for name in ranked[1:])
    reasons = [_reason(f"{best} has the highest {label} of the {len(ranked)} strategies considered: "
                       f"{format_interval(measures[best])} vs {others}.",
                       *(_metric_path(name, metric) for name in ranked))]
    tied = [best]
    for name in ranked[1:]:
        comparison = _compare(results, metric, best, name)
        if comparison.significant:
            text = (f"{best} is significantly better than {name} on {label}: {measures[best].value:.2f} vs "
                    f"{measures[name].value:.2f} ({comparison.text}).")
        else:
            tied.append(name)
            text = (f"{name} is not significantly worse than {best} on {label}: {format_interval(measures[name])} "
                    f"vs {measures[best].value:.2f} ({comparison.text}), so they count as tied.")
        reasons.append(_reason(text, *comparison.evidence))
    return tied, reasons


def _tests_with(results: Results, metric: str, best: str, names: list[str]) -> list[tuple[int, object]]:
    """The recorded paired tests of `best` against each other strategy of `names`, with their indices."""
    found = [_test_between(results, metric, best, name) for name in names if name != best]
    return [pair for pair in found if pair]


def test_set_resolution(results: Results, metric: str, ranked: list[str]) -> tuple[float | None, Reason] | None:
    """The smallest difference on `metric` this test set detects between the best strategy and another (the median
    over those pairs, 80% power at the Holm-corrected 5% level; None when the questions are too few for any
    difference to be significant), with a sentence saying so; None without paired tests."""
    pairs = _tests_with(results, metric, ranked[0], ranked)
    if not pairs:
        return None
    comparisons, n = _family_size(results, metric), max(entry.n for _, entry in pairs)
    evidence = [f"significance[{index}]" for index, _ in pairs]
    if n < fewest_questions_for_significance(comparisons):
        return None, _reason(
            f"With {n} test questions and {comparisons} comparisons no difference can be significant: the paired "
            f"permutation test's smallest p-value is 2/2^{n} = {2 / 2 ** n:.2g}, {comparisons * 2 / 2 ** n:.2g} once "
            f"Holm-corrected; it takes at least {fewest_questions_for_significance(comparisons)} questions.", *evidence)
    detectable = statistics.median(detectable_difference(entry.sd_difference, entry.n, comparisons=comparisons)
                                   for _, entry in pairs)
    text = (f"With {n} test questions this comparison detects differences of about {detectable:.2f} in "
            f"{metric_label(metric)} between {ranked[0]} and another strategy ({POWER:.0%} power, "
            f"{SIGNIFICANCE_LEVEL:.0%} level Holm-corrected over {comparisons} comparisons; the median over "
            f"{len(pairs)} pairs); smaller ones can go unseen.")
    return detectable, _reason(text, *evidence)


def _equivalent(results: Results, metric: str, ranked: list[str], detectable: float | None) -> bool:
    """Whether strategies that no test separates are shown equivalent: the test set detects differences within
    EQUIVALENCE_MARGIN and every difference to the best has its interval inside ±EQUIVALENCE_MARGIN."""
    if detectable is None or detectable > EQUIVALENCE_MARGIN:
        return False
    pairs = _tests_with(results, metric, ranked[0], ranked)
    return len(pairs) == len(ranked) - 1 and all(
        -EQUIVALENCE_MARGIN <= entry.ci_low and entry.ci_high <= EQUIVALENCE_MARGIN for _, entry in pairs)


def _sizing_reasons(results: Results, metric: str, ranked: list[str]) -> list[Reason]:
    """How many test questions would separate the best strategy from each rival it is tied with."""
    best, comparisons, reasons = ranked[0], _family_size(results, metric), []
    label, n = metric_label(metric), results.test_set.n
    rivals = []
    for name in ranked[1:]:
        found = _test_between(results, metric, best, name)
        if found:
            rivals.append(found)
    observed = [(index, entry) for index, entry in rivals if entry.mean_difference != 0]
    for index, entry in sorted(observed, key=lambda pair: abs(pair[1].mean_difference))[:MAX_SIZING_LINES]:
        other = entry.b if entry.a == best else entry.a
        needed = required_questions(entry.sd_difference, entry.mean_difference, comparisons=comparisons)
        reasons.append(_reason(
            f"To tell {best} from {other} on {label} (a difference of {abs(entry.mean_difference):.2f}, per-question "
            f"SD {entry.sd_difference:.2f}) takes about {needed} test questions ({POWER:.0%} power, Holm-corrected "
            f"over {comparisons} comparisons); this test set has {n}. Pass a larger --test file or raise "
            "budget.max_test_questions.", f"significance[{index}]"))
    if rivals and not observed:
        reasons.append(_reason(f"{best} and every other strategy scored the same on average; more questions alone will "
                               "not separate them.", *(f"significance[{index}]" for index, _ in rivals)))
    return reasons


def _budget_reason(results: Results, ranked: list[str]) -> Reason | None:
    """How long the fine-tuned strategies trained (strategies sharing a run named together), with their loss."""
    runs: dict[tuple, list[str]] = {}
    for name in ranked:
        losses = [point for point in results.strategies[name].training_curve if point.loss is not None]
        if losses:
            runs.setdefault((losses[0].loss, losses[-1].step, losses[-1].loss), []).append(name)
    if not runs:
        return None
    parts = [f"{_subject(names, 'trained', 'trained')} {step} steps (training loss {first:.2f} → {last:.2f})"
             for (first, step, last), names in runs.items()]
    budget = results.config.budget
    if results.config.quick:  # the quick budget replaces the experiment's: leaving it is the step to take
        how = "run without --quick, and the experiment's budget.sft_max_steps and budget.raft_max_steps apply"
    else:
        now = (f" (now {budget['sft_max_steps']} and {budget['raft_max_steps']})"
               if {"sft_max_steps", "raft_max_steps"} <= set(budget) else "")
        how = (f"raise budget.sft_max_steps and budget.raft_max_steps{now} in an experiment file for `ragtune "
               "compare --experiment FILE`")
    return _reason(f"A larger training budget (more steps: {how}) may separate the fine-tuned strategies: "
                   f"{'; '.join(parts)}.",
                   *(f"strategies.{name}.training_curve" for names in runs.values() for name in names))


def _model_reason(results: Results, metric: str, ranked: list[str]) -> Reason | None:
    """A stronger base model when even the best strategy scores low."""
    best = results.strategies[ranked[0]].metrics[metric]
    if best.value >= WEAK_SCORE:
        return None
    return _reason(f"Even the best strategy scores {best.value:.2f} on {metric_label(metric)}: "
                   f"{_stronger_model(results)} would give the strategies room to differ.",
                   _metric_path(ranked[0], metric))


def _stronger_model(results: Results) -> str:
    return (f"a stronger base model than {results.config.model} (--model gemma3-270m, a local GGUF or model "
            "directory, or openai:MODEL@URL)")


def _what_would_decide(results: Results, metric: str, ranked: list[str]) -> list[Reason]:
    extra = [_budget_reason(results, ranked), _model_reason(results, metric, ranked)]
    return _sizing_reasons(results, metric, ranked) + [reason for reason in extra if reason]


def _cost_key(strategy: StrategyResult) -> tuple[float, float]:
    """Machine time per 1,000 questions, then training time (money is the same order at any price per hour)."""
    return strategy.cost.machine_seconds_per_1000_questions, strategy.cost.train_seconds or 0.0


def _cheapest(results: Results, tied: list[str]) -> tuple[str, Reason]:
    """The tied strategy that answers for the least machine time, then trained in the least; described in money
    when the comparison had a price per hour, in machine time otherwise."""
    strategies = results.strategies
    chosen = min(tied, key=lambda name: _cost_key(strategies[name]))
    priced = results.is_priced()
    keys = ("cost_per_1000_questions", "training_cost") if priced else (
        "machine_seconds_per_1000_questions", "train_seconds")
    show = format_money if priced else format_seconds

    def describe(name: str) -> str:
        cost = strategies[name].cost
        training = getattr(cost, keys[1])
        training = "no training" if training is None else f"{show(training)} training"
        return f"{show(getattr(cost, keys[0]))} per 1,000 questions and {training}"

    others = "; ".join(f"{name} {describe(name)}" for name in tied if name != chosen)
    evidence = [_cost_path(name, key) for name in tied for key in keys]
    return chosen, _reason(f"Among the tied strategies {chosen} is the cheapest: {describe(chosen)}, vs {others}.",
                           *evidence)


def _fastest_update(results: Results, tied: list[str], metric: str, changes: str) -> tuple[list[str], Reason] | None:
    """The tied strategy absorbing new documents fastest among those keeping accuracy on new questions."""
    entries = results.knowledge_update.strategies
    measured = [name for name in tied if name in entries and metric in entries[name].new]
    if not measured:
        return None
    best_new = max(entries[name].new[metric] for name in measured)
    keeping = [name for name in measured if entries[name].new[metric] >= ACCURACY_KEPT * best_new]
    fastest = min(keeping, key=lambda name: entries[name].absorb_seconds)
    label = metric_label(metric)

    def describe(name: str) -> str:
        return (f"{name} {format_seconds(entries[name].absorb_seconds)} ({label} "
                f"{entries[name].new[metric]:.2f} on new questions)")

    text = (f"Knowledge changes {changes}, so among the tied strategies the one absorbing new documents fastest "
            f"while keeping its {label} on new questions wins: {describe(fastest)}")
    rivals = [name for name in measured if name != fastest]
    if rivals:
        text += " vs " + ", ".join(describe(name) for name in rivals)
    lagging = [name for name in measured if name not in keeping]
    if lagging:
        text += (f"; {_subject(lagging, 'falls', 'fall')} below {ACCURACY_KEPT:.0%} of the best new-question "
                 f"{label} ({best_new:.2f})")
    unmeasured = [name for name in tied if name not in measured]
    if unmeasured:
        text += f"; the update of {', '.join(unmeasured)} was not measured"
    evidence = [_update_path(name, key) for name in measured for key in ("absorb_seconds", f"new.{metric}")]
    return [fastest], _reason(text + ".", *evidence)


def _retrieval_first(results: Results, tied: list[str], changes: str) -> tuple[list[str], Reason]:
    """Without a measured update: prefer tied strategies that read new documents from an index."""
    retrieving = [name for name in tied if results.strategies[name].uses_retrieval]
    closed = [name for name in tied if name not in retrieving]
    text = f"Knowledge changes {changes} and the update cost was not measured: "
    if retrieving and closed:
        text += (f"{_subject(closed, 'answers', 'answer')} closed book and {_verb(closed, 'needs', 'need')} "
                 f"retraining for new knowledge, while {_subject(retrieving, 'only needs', 'only need')} the new "
                 "documents indexed.")
    elif retrieving:
        text += "all tied strategies retrieve, so new documents only need indexing."
    else:
        text += "all tied strategies answer closed book, so each needs retraining for new knowledge."
    return retrieving or tied, _reason(text, *(f"strategies.{name}.uses_retrieval" for name in tied))


def _better_than_base(results: Results, tied: list[str], metric: str) -> tuple[list[str], Reason] | None:
    """The tied strategies shown to beat the base model, when it was measured and some (not all) of them do: a
    strategy that cannot be told apart from the base model has not shown that it adds anything."""
    strategies = results.strategies
    if "base" not in strategies or "base" in tied or metric not in strategies["base"].metrics:
        return None
    base_value = strategies["base"].metrics[metric].value
    comparisons = {name: _compare(results, metric, name, "base") for name in tied}
    proven = [name for name in tied
              if comparisons[name].significant and strategies[name].metrics[metric].value > base_value]
    unproven = [name for name in tied if name not in proven]
    if not proven or not unproven:
        return None
    details = "; ".join(f"{name} {strategies[name].metrics[metric].value:.2f} vs {base_value:.2f}: "
                        f"{comparisons[name].text}" for name in unproven)
    text = (f"{_subject(unproven, 'is', 'are')} not significantly better than base on {metric_label(metric)} "
            f"({details}), so the tie is settled among those that are: {', '.join(proven)}.")
    return proven, _reason(text, *(path for name in unproven for path in comparisons[name].evidence))


def _human_path(results: Results, name: str) -> str:
    index = next(i for i, rating in enumerate(results.human_evaluation.ratings) if rating.strategy == name)
    return f"human_evaluation.ratings[{index}]"


def _format_rating(rating) -> str:
    return f"{rating.score:.0f} [{rating.ci_low:.0f}, {rating.ci_high:.0f}]"


def _people_prefer(results: Results, names: list[str]) -> tuple[str, Reason] | None:
    """The one of `names` people rate significantly above each of the others in blind votes (its 95% interval
    above theirs), when every one of them was rated."""
    human = results.human_evaluation
    rated = [human.rating(name) for name in names] if human and len(names) > 1 else []
    if not rated or any(rating is None or not rating.battles for rating in rated):
        return None
    best = max(rated, key=lambda rating: rating.score)
    others = [rating for rating in rated if rating is not best]
    if not all(best.ci_low > rating.ci_high for rating in others):
        return None
    text = (f"People prefer {best.strategy} in {human.votes} blind arena votes: rating {_format_rating(best)} against "
            + ", ".join(f"{rating.strategy} {_format_rating(rating)}" for rating in others)
            + " (95% intervals apart), which settles the tie on the automatic metric.")
    return best.strategy, _reason(text, *(_human_path(results, rating.strategy) for rating in rated))


def _disagreement(results: Results, chosen: str, metric: str) -> Reason | None:
    """When people rate another strategy above the chosen one: both numbers, and whether people's difference is
    significant."""
    human = results.human_evaluation
    chosen_rating = human.rating(chosen) if human else None
    if chosen_rating is None or not chosen_rating.battles or human.ratings[0].strategy == chosen:
        return None
    top = human.ratings[0]
    top_result = results.strategies.get(top.strategy)
    if top_result is None or metric not in top_result.metrics:
        return None
    significant = top.ci_low > chosen_rating.ci_high
    label = metric_label(metric)
    values = {name: results.strategies[name].metrics[metric] for name in (chosen, top.strategy)}
    return _reason(f"People and {label} disagree: in {human.votes} blind votes people rate {top.strategy} "
                   f"{_format_rating(top)} above {chosen} {_format_rating(chosen_rating)} "
                   f"({'significantly' if significant else 'not significantly'}), while {label} gives {chosen} "
                   f"{format_interval(values[chosen])} and {top.strategy} {format_interval(values[top.strategy])}.",
                   _human_path(results, top.strategy), _human_path(results, chosen), _metric_path(chosen, metric),
                   _metric_path(top.strategy, metric))


def _break_tie(results: Results, tied: list[str], metric: str, constraints: Constraints) -> tuple[str, list[Reason]]:
    """Pick among tied strategies: the one people significantly prefer, then those shown better than the base
    model, then update speed when knowledge changes often, then cost."""
    preferred = _people_prefer(results, tied)
    if preferred:
        return preferred[0], [preferred[1]]
    reasons = []
    better = _better_than_base(results, tied, metric) if len(tied) > 1 else None
    if better:
        tied, reason = better
        reasons.append(reason)
    if len(tied) > 1 and constraints.knowledge_changes in FREQUENT_CHANGES:
        changes = constraints.knowledge_changes
        update = _fastest_update(results, tied, metric, changes) if results.knowledge_update else None
        tied, reason = update or _retrieval_first(results, tied, changes)
        reasons.append(reason)
    if len(tied) == 1:
        return tied[0], reasons
    chosen, reason = _cheapest(results, tied)
    return chosen, reasons + [reason]


def _knowledge_reason(results: Results, name: str, metric: str, changes: str) -> Reason | None:
    """What keeping the chosen strategy's knowledge current costs, measured or inferred."""
    strategy, label = results.strategies[name], metric_label(metric)
    cost = strategy.cost
    if changes == "never":
        if strategy.uses_retrieval or cost.train_seconds is None:
            return None
        return _reason(f"Knowledge never changes, so {name}'s training ({format_seconds(cost.train_seconds)}) "
                       "is paid once.", _cost_path(name, "train_seconds"))
    update = results.knowledge_update
    entry = update.strategies.get(name) if update else None
    forgetting = entry.forgetting(metric) if entry else None
    if entry and metric in entry.new and forgetting is not None:
        return _reason(
            f"Knowledge changes {changes}: {name} absorbed the {update.new_documents} new documents in "
            f"{format_seconds(entry.absorb_seconds)} ({entry.how}), scoring {label} {entry.new[metric]:.2f} "
            f"on the {update.new_questions} new questions and {entry.old_after[metric]:.2f} on the "
            f"{update.old_questions} old ones ({entry.old_before[metric]:.2f} before; forgetting {forgetting:.2f}).",
            *(_update_path(name, key) for key in ("absorb_seconds", f"new.{metric}", f"old_after.{metric}",
                                                   f"old_before.{metric}")))
    if strategy.uses_retrieval and cost.index_seconds is not None:
        return _reason(f"The update cost was not measured; {name} retrieves, so knowledge changing {changes} only "
                       f"needs the new documents indexed (indexing took {format_seconds(cost.index_seconds)}).",
                       f"strategies.{name}.uses_retrieval", _cost_path(name, "index_seconds"))
    if not strategy.uses_retrieval and cost.train_seconds is not None:
        return _reason(f"The update cost was not measured; {name} answers closed book, so knowledge changing "
                       f"{changes} means retraining each time (training took {format_seconds(cost.train_seconds)}).",
                       f"strategies.{name}.uses_retrieval", _cost_path(name, "train_seconds"))
    return None


def _fit_reason(results: Results, name: str, constraints: Constraints) -> Reason | None:
    """How the chosen strategy meets the hard constraints that were set."""
    strategy, texts, evidence = results.strategies[name], [], []
    if constraints.latency_p95_s is not None:
        texts.append(f"p95 latency {format_seconds(strategy.latency.p95_s)} within the "
                     f"{format_seconds(constraints.latency_p95_s)} target")
        evidence.append(f"strategies.{name}.latency.p95_s")
    if constraints.budget_per_1000 is not None:
        texts.append(f"{format_money(strategy.cost.cost_per_1000_questions)} per 1,000 questions within the "
                     f"{format_money(constraints.budget_per_1000)} budget")
        evidence.append(_cost_path(name, "cost_per_1000_questions"))
    if constraints.must_cite:
        texts.append(f"cites the {strategy.k} passages it retrieves")
        evidence.append(f"strategies.{name}.uses_retrieval")
    return _reason(f"{name} meets the constraints: {'; '.join(texts)}.", *evidence) if texts else None


def _no_metric(results: Results) -> Recommendation:
    """The verdict when no fitting metric carries information."""
    choice = results.metric_choice
    ranked = list(results.strategies)
    extra = [_budget_reason(results, ranked)]
    stronger = _stronger_model(results)
    model = _reason(f"{stronger[0].upper()}{stronger[1:]}, or answers the metrics can see, would let the strategies "
                    "differ.", "metric_choice")
    return Recommendation(verdict="inconclusive", strategy=None,
                          headline="Inconclusive: no metric that fits these answers tells the strategies apart",
                          reasons=[_reason(choice.reason[0].upper() + choice.reason[1:] + ".", "metric_choice")],
                          what_would_decide=[reason for reason in [*extra, model] if reason])


def recommend(results: Results, constraints: Constraints) -> Recommendation:
    """The verdict on `results` (which carry their metric choice and paired tests) under `constraints`.

    `excluded` names every strategy breaking a hard constraint (or lacking the deciding metric), even when
    nothing passes and the best of them is considered anyway.
    """
    metric = results.deciding_metric
    if metric is None:
        return _no_metric(results)
    strategies, label = results.strategies, metric_label(metric)
    measured = {name: strategy for name, strategy in strategies.items() if metric in strategy.metrics}
    if not measured:
        raise ValueError(f"no strategy has the deciding metric {metric!r}")
    excluded = {name: f"{label} was not measured" for name in strategies if name not in measured}
    broken = {name: _violations(name, strategy, constraints) for name, strategy in measured.items()}
    reasons = [_reason(f"{name} is excluded: {text}.", path)
               for name in measured for text, path in broken[name].values()]
    excluded |= {name: "; ".join(text for text, _ in broken[name].values()) for name in measured if broken[name]}
    eligible = [name for name in measured if not broken[name]]
    if not eligible:
        reasons.append(_nothing_passes(strategies, broken, metric))
        eligible = list(measured)
    ranked = sorted(eligible, key=lambda name: -measured[name].metrics[metric].value)
    tied, quality = _quality_reasons(results, metric, ranked)
    resolution = test_set_resolution(results, metric, ranked)
    detectable = resolution[0] if resolution else None
    reasons += quality + ([resolution[1]] if resolution else [])
    best = measured[ranked[0]].metrics[metric]
    all_tied = len(ranked) > 1 and len(tied) == len(ranked)
    if all_tied and not _equivalent(results, metric, ranked, detectable):
        text = f"No strategy is separated from the best ({ranked[0]}, {label} {format_interval(best)})"
        if detectable is not None:
            text += f", and the test set could miss differences smaller than {detectable:.2f}"
        preferred = _people_prefer(results, ranked)
        if preferred:  # people decide what the metric cannot
            reasons += [_reason(text + ".", _metric_path(ranked[0], metric)), preferred[1]]
            return _recommended(results, preferred[0], metric, constraints, reasons, excluded, broken, detectable)
        reasons.append(_reason(text + ": the measurements do not decide, so nothing is recommended.",
                               _metric_path(ranked[0], metric)))
        human = results.human_evaluation
        what_would_decide = _what_would_decide(results, metric, ranked) + (
            [_reason(f"Human votes: {human.stopping_hint}", "human_evaluation.stopping_hint")] if human else [])
        return Recommendation(verdict="inconclusive", strategy=None,
                              headline=f"Inconclusive: the {len(ranked)} strategies are not separated on {label}",
                              reasons=reasons, excluded=excluded, what_would_decide=what_would_decide,
                              detectable_difference=detectable)
    if all_tied:
        reasons.append(_reason(f"The test set detects differences of {detectable:.2f} and every difference to "
                               f"{ranked[0]} lies within ±{EQUIVALENCE_MARGIN} (95% intervals), so the strategies are "
                               f"equivalent on {label}; other measurements decide.",
                               *(f"significance[{index}]" for index, _ in _tests_with(results, metric, ranked[0],
                                                                                       ranked))))
    chosen, tie_break = _break_tie(results, tied, metric, constraints)
    return _recommended(results, chosen, metric, constraints, reasons + tie_break, excluded, broken, detectable)


def _recommended(results: Results, chosen: str, metric: str, constraints: Constraints, reasons: list[Reason],
                 excluded: dict[str, str], broken: dict, detectable: float | None) -> Recommendation:
    """The verdict for `chosen`, closing the reasons with its knowledge cost, its fit to the constraints and any
    disagreement of people with the metric."""
    closing = [_knowledge_reason(results, chosen, metric, constraints.knowledge_changes),
               None if broken[chosen] else _fit_reason(results, chosen, constraints),
               _disagreement(results, chosen, metric)]
    measure = results.strategies[chosen].metrics[metric]
    return Recommendation(verdict="recommended", strategy=chosen,
                          headline=f"Recommended: {chosen} ({metric_label(metric)} {format_interval(measure)})",
                          reasons=reasons + [reason for reason in closing if reason], excluded=excluded,
                          detectable_difference=detectable)
