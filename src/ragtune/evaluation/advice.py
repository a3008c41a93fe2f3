"""Which strategy to use, derived from the measured numbers.

Hard constraints (p95 latency, cost per 1,000 questions, citations) filter the strategies; the rest are ranked
by the primary metric; those whose difference to the best is not significant count as tied, and ties are broken
by whether a strategy is shown better than the base model, by how fast it absorbs new documents (when knowledge
changes weekly or daily), then by cost. Every reason quotes the numbers it rests on and cites their JSON paths in
the results dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

from ragtune.evaluation.costs import is_priced

KnowledgeChanges = Literal["never", "monthly", "weekly", "daily"]
FREQUENT_CHANGES = ("weekly", "daily")
ACCURACY_KEPT = 0.9  # an update keeps accuracy when its new-question score is at least 90% of the best one

METRIC_LABELS = {
    "exact_match": "exact match", "f1": "F1", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
    "bleu": "BLEU", "similarity": "similarity", "mc_accuracy": "multiple-choice accuracy",
    "recall_at_k": "recall@k", "mrr": "MRR", "groundedness": "groundedness",
}


def metric_label(metric: str) -> str:
    """The display name of a metric ("f1" -> "F1")."""
    return METRIC_LABELS.get(metric, metric)


def format_interval(measure: dict) -> str:
    """A metric with its confidence interval: "0.41 [0.35, 0.47]"."""
    return f"{measure['value']:.2f} [{measure['ci_low']:.2f}, {measure['ci_high']:.2f}]"


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
class Constraints:
    """What the deployment needs: a p95 latency target (s), a budget per 1,000 questions ($), how often the
    knowledge changes, and whether answers must cite retrieved sources."""

    latency_p95_s: float | None = None
    budget_per_1000: float | None = None
    knowledge_changes: KnowledgeChanges = "monthly"
    must_cite: bool = False

    def __post_init__(self):
        if self.knowledge_changes not in get_args(KnowledgeChanges):
            raise ValueError(f"knowledge_changes must be one of {', '.join(get_args(KnowledgeChanges))}, "
                             f"not {self.knowledge_changes!r}")

    @classmethod
    def from_dict(cls, data: dict) -> Constraints:
        unknown = set(data) - {field.name for field in fields(cls)}
        if unknown:
            raise ValueError(f"unknown constraints: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict:
        """The set constraints (unset targets left out, as in results.json)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class _Comparison:
    significant: bool
    text: str
    evidence: list[str]


def _reason(text: str, *evidence: str) -> dict:
    return {"text": text, "evidence": list(evidence)}


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


def _violations(name: str, strategy: dict, constraints: Constraints) -> dict[str, tuple[str, str]]:
    """The hard constraints a strategy breaks, keyed by constraint: (what is wrong, evidence path)."""
    broken = {}
    p95, cost = strategy["latency"]["p95_s"], strategy["cost"]["cost_per_1000_questions"]
    if constraints.latency_p95_s is not None and p95 > constraints.latency_p95_s:
        broken["latency_p95_s"] = ((f"p95 latency {format_seconds(p95)} is above the "
                                    f"{format_seconds(constraints.latency_p95_s)} target"),
                                   f"strategies.{name}.latency.p95_s")
    if constraints.budget_per_1000 is not None and cost > constraints.budget_per_1000:
        broken["budget_per_1000"] = ((f"{format_money(cost)} per 1,000 questions is above the "
                                      f"{format_money(constraints.budget_per_1000)} budget"),
                                     _cost_path(name, "cost_per_1000_questions"))
    if constraints.must_cite and not strategy["uses_retrieval"]:
        broken["must_cite"] = ("it answers closed book (no retrieval), so it has no sources to cite",
                               f"strategies.{name}.uses_retrieval")
    return broken


def _nothing_passes(strategies: dict, broken: dict[str, dict[str, tuple[str, str]]], metric: str) -> dict:
    """Say which constraint no strategy met (or that none met all at once) before recommending regardless."""
    unmet = [key for key in ("latency_p95_s", "budget_per_1000", "must_cite")
             if all(key in broken[name] for name in broken)]
    texts, evidence = [], []
    if "latency_p95_s" in unmet:
        fastest = min(broken, key=lambda name: strategies[name]["latency"]["p95_s"])
        texts.append(f"no strategy meets the p95 latency target (the fastest, {fastest}, takes "
                     f"{format_seconds(strategies[fastest]['latency']['p95_s'])})")
        evidence.append(f"strategies.{fastest}.latency.p95_s")
    if "budget_per_1000" in unmet:
        cheapest = min(broken, key=lambda name: strategies[name]["cost"]["cost_per_1000_questions"])
        texts.append(f"no strategy fits the budget (the cheapest, {cheapest}, costs "
                     f"{format_money(strategies[cheapest]['cost']['cost_per_1000_questions'])} per 1,000 questions)")
        evidence.append(_cost_path(cheapest, "cost_per_1000_questions"))
    if "must_cite" in unmet:
        texts.append("no strategy retrieves passages it could cite")
        evidence += [f"strategies.{name}.uses_retrieval" for name in broken]
    if not texts:
        texts.append("each constraint is met by some strategy, but none meets all of them at once")
        evidence += [path for name in broken for _, path in broken[name].values()]
    summary = "; ".join(texts)
    return _reason(f"Nothing passes the constraints: {summary}. Recommending the best by {metric_label(metric)} "
                   "anyway.", *evidence)


def _compare(results: dict, metric: str, winner: str, other: str) -> _Comparison:
    """Whether `winner` beats `other` on the metric: the paired test when recorded, else CI overlap."""
    for index, entry in enumerate(results.get("significance", [])):
        if entry["metric"] == metric and {entry["a"], entry["b"]} == {winner, other}:
            sign = 1 if entry["a"] == winner else -1
            low, high = sorted((sign * entry["ci_low"], sign * entry["ci_high"]))
            text = (f"difference {sign * entry['mean_difference']:+.2f}, CI [{low:+.2f}, {high:+.2f}], "
                    f"{format_p(entry['p_value'])}")
            return _Comparison(bool(entry["significant"]), text, [f"significance[{index}]"])
    first, second = (results["strategies"][name]["metrics"][metric] for name in (winner, other))
    overlap = second["ci_high"] >= first["ci_low"] and first["ci_high"] >= second["ci_low"]
    text = f"no paired test recorded; the confidence intervals {'overlap' if overlap else 'do not overlap'}"
    return _Comparison(not overlap, text, [_metric_path(winner, metric), _metric_path(other, metric)])


def _quality_reasons(results: dict, metric: str, ranked: list[str]) -> tuple[list[str], list[dict]]:
    """The ranking by the primary metric and, against the best, which strategies are tied with it."""
    label, best = metric_label(metric), ranked[0]
    measures = {name: results["strategies"][name]["metrics"][metric] for name in ranked}
    if len(ranked) == 1:
        return ranked, [_reason(f"{best} is the only strategy considered: {label} {format_interval(measures[best])}.",
                                _metric_path(best, metric))]
    others = ", ".join(f"{measures[name]['value']:.2f} for {name}" for name in ranked[1:])
    reasons = [_reason(f"{best} has the highest {label} of the {len(ranked)} strategies considered: "
                       f"{format_interval(measures[best])} vs {others}.",
                       *(_metric_path(name, metric) for name in ranked))]
    tied = [best]
    for name in ranked[1:]:
        comparison = _compare(results, metric, best, name)
        if comparison.significant:
            text = (f"{best} is significantly better than {name} on {label}: {measures[best]['value']:.2f} vs "
                    f"{measures[name]['value']:.2f} ({comparison.text}).")
        else:
            tied.append(name)
            text = (f"{name} is not significantly worse than {best} on {label}: {format_interval(measures[name])} "
                    f"vs {measures[best]['value']:.2f} ({comparison.text}), so they count as tied.")
        reasons.append(_reason(text, *comparison.evidence))
    return tied, reasons


def _cost_key(strategy: dict) -> tuple[float, float]:
    """Machine time per 1,000 questions, then training time (money is the same order at any price per hour)."""
    return strategy["cost"]["machine_seconds_per_1000_questions"], strategy["cost"]["train_seconds"] or 0.0


def _cheapest(results: dict, tied: list[str]) -> tuple[str, dict]:
    """The tied strategy that answers for the least machine time, then trained in the least; described in money
    when the comparison had a price per hour, in machine time otherwise."""
    strategies = results["strategies"]
    chosen = min(tied, key=lambda name: _cost_key(strategies[name]))
    priced = is_priced(results)
    keys = ("cost_per_1000_questions", "training_cost") if priced else (
        "machine_seconds_per_1000_questions", "train_seconds")
    show = format_money if priced else format_seconds

    def describe(name: str) -> str:
        cost = strategies[name]["cost"]
        training = "no training" if cost[keys[1]] is None else f"{show(cost[keys[1]])} training"
        return f"{show(cost[keys[0]])} per 1,000 questions and {training}"

    others = "; ".join(f"{name} {describe(name)}" for name in tied if name != chosen)
    evidence = [_cost_path(name, key) for name in tied for key in keys]
    return chosen, _reason(f"Among the tied strategies {chosen} is the cheapest: {describe(chosen)}, vs {others}.",
                           *evidence)


def _fastest_update(results: dict, tied: list[str], metric: str, changes: str) -> tuple[list[str], dict] | None:
    """The tied strategy absorbing new documents fastest among those keeping accuracy on new questions."""
    entries = results["knowledge_update"]["strategies"]
    measured = [name for name in tied if metric in entries.get(name, {}).get("new", {})]
    if not measured:
        return None
    best_new = max(entries[name]["new"][metric] for name in measured)
    keeping = [name for name in measured if entries[name]["new"][metric] >= ACCURACY_KEPT * best_new]
    fastest = min(keeping, key=lambda name: entries[name]["absorb_seconds"])
    label = metric_label(metric)

    def describe(name: str) -> str:
        return (f"{name} {format_seconds(entries[name]['absorb_seconds'])} ({label} "
                f"{entries[name]['new'][metric]:.2f} on new questions)")

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


def _retrieval_first(results: dict, tied: list[str], changes: str) -> tuple[list[str], dict]:
    """Without a measured update: prefer tied strategies that read new documents from an index."""
    retrieving = [name for name in tied if results["strategies"][name]["uses_retrieval"]]
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


def _better_than_base(results: dict, tied: list[str], metric: str) -> tuple[list[str], dict] | None:
    """The tied strategies shown to beat the base model, when it was measured and some (not all) of them do: a
    strategy that cannot be told apart from the base model has not shown that it adds anything."""
    strategies = results["strategies"]
    if "base" not in strategies or "base" in tied:
        return None
    base_value = strategies["base"]["metrics"][metric]["value"]
    comparisons = {name: _compare(results, metric, name, "base") for name in tied}
    proven = [name for name in tied
              if comparisons[name].significant and strategies[name]["metrics"][metric]["value"] > base_value]
    unproven = [name for name in tied if name not in proven]
    if not proven or not unproven:
        return None
    details = "; ".join(f"{name} {strategies[name]['metrics'][metric]['value']:.2f} vs {base_value:.2f}: "
                        f"{comparisons[name].text}" for name in unproven)
    text = (f"{_subject(unproven, 'is', 'are')} not significantly better than base on {metric_label(metric)} "
            f"({details}), so the tie is settled among those that are: {', '.join(proven)}.")
    return proven, _reason(text, *(path for name in unproven for path in comparisons[name].evidence))


def _break_tie(results: dict, tied: list[str], metric: str, constraints: Constraints) -> tuple[str, list[dict]]:
    """Pick among tied strategies: those shown better than the base model, then update speed when knowledge
    changes often, then cost."""
    reasons = []
    better = _better_than_base(results, tied, metric) if len(tied) > 1 else None
    if better:
        tied, reason = better
        reasons.append(reason)
    if len(tied) > 1 and constraints.knowledge_changes in FREQUENT_CHANGES:
        changes = constraints.knowledge_changes
        update = _fastest_update(results, tied, metric, changes) if "knowledge_update" in results else None
        tied, reason = update or _retrieval_first(results, tied, changes)
        reasons.append(reason)
    if len(tied) == 1:
        return tied[0], reasons
    chosen, reason = _cheapest(results, tied)
    return chosen, reasons + [reason]


def _knowledge_reason(results: dict, name: str, metric: str, changes: str) -> dict | None:
    """What keeping the chosen strategy's knowledge current costs, measured or inferred."""
    strategy, label = results["strategies"][name], metric_label(metric)
    cost = strategy["cost"]
    if changes == "never":
        if strategy["uses_retrieval"] or cost["train_seconds"] is None:
            return None
        return _reason(f"Knowledge never changes, so {name}'s training ({format_seconds(cost['train_seconds'])}) "
                       "is paid once.", _cost_path(name, "train_seconds"))
    update = results.get("knowledge_update", {})
    entry = update.get("strategies", {}).get(name)
    if entry and metric in entry["new"]:
        return _reason(
            f"Knowledge changes {changes}: {name} absorbed the {update['new_documents']} new documents in "
            f"{format_seconds(entry['absorb_seconds'])} ({entry['how']}), scoring {label} {entry['new'][metric]:.2f} "
            f"on the {update['new_questions']} new questions and {entry['old_after'][metric]:.2f} on the "
            f"{update['old_questions']} old ones ({entry['old_before'][metric]:.2f} before; forgetting "
            f"{entry['forgetting']:.2f}).",
            *(_update_path(name, key) for key in ("absorb_seconds", f"new.{metric}", f"old_after.{metric}",
                                                   f"old_before.{metric}", "forgetting")))
    if strategy["uses_retrieval"] and cost["index_seconds"] is not None:
        return _reason(f"The update cost was not measured; {name} retrieves, so knowledge changing {changes} only "
                       f"needs the new documents indexed (indexing took {format_seconds(cost['index_seconds'])}).",
                       f"strategies.{name}.uses_retrieval", _cost_path(name, "index_seconds"))
    if not strategy["uses_retrieval"] and cost["train_seconds"] is not None:
        return _reason(f"The update cost was not measured; {name} answers closed book, so knowledge changing "
                       f"{changes} means retraining each time (training took {format_seconds(cost['train_seconds'])}).",
                       f"strategies.{name}.uses_retrieval", _cost_path(name, "train_seconds"))
    return None


def _fit_reason(results: dict, name: str, constraints: Constraints) -> dict | None:
    """How the chosen strategy meets the hard constraints that were set."""
    strategy, texts, evidence = results["strategies"][name], [], []
    if constraints.latency_p95_s is not None:
        texts.append(f"p95 latency {format_seconds(strategy['latency']['p95_s'])} within the "
                     f"{format_seconds(constraints.latency_p95_s)} target")
        evidence.append(f"strategies.{name}.latency.p95_s")
    if constraints.budget_per_1000 is not None:
        texts.append(f"{format_money(strategy['cost']['cost_per_1000_questions'])} per 1,000 questions within the "
                     f"{format_money(constraints.budget_per_1000)} budget")
        evidence.append(_cost_path(name, "cost_per_1000_questions"))
    if constraints.must_cite:
        texts.append(f"cites the {strategy['k']} passages it retrieves")
        evidence.append(f"strategies.{name}.uses_retrieval")
    return _reason(f"{name} meets the constraints: {'; '.join(texts)}.", *evidence) if texts else None


def recommend(results: dict, constraints: Constraints) -> dict:
    """The strategy to use, with reasons (text quoting the numbers, evidence as JSON paths into `results`).

    `excluded` names every strategy breaking a hard constraint (or lacking the primary metric), even when
    nothing passes and the best of them is recommended anyway.
    """
    metric, strategies = results["primary_metric"], results["strategies"]
    measured = {name: strategy for name, strategy in strategies.items() if metric in strategy["metrics"]}
    if not measured:
        raise ValueError(f"no strategy has the primary metric {metric!r}")
    excluded = {name: f"{metric_label(metric)} was not measured" for name in strategies if name not in measured}
    broken = {name: _violations(name, strategy, constraints) for name, strategy in measured.items()}
    reasons = [_reason(f"{name} is excluded: {text}.", path)
               for name in measured for text, path in broken[name].values()]
    excluded |= {name: "; ".join(text for text, _ in broken[name].values()) for name in measured if broken[name]}
    eligible = [name for name in measured if not broken[name]]
    if not eligible:
        reasons.append(_nothing_passes(strategies, broken, metric))
        eligible = list(measured)
    ranked = sorted(eligible, key=lambda name: -measured[name]["metrics"][metric]["value"])
    tied, quality = _quality_reasons(results, metric, ranked)
    chosen, tie_break = _break_tie(results, tied, metric, constraints)
    closing = [_knowledge_reason(results, chosen, metric, constraints.knowledge_changes),
               None if broken[chosen] else _fit_reason(results, chosen, constraints)]
    reasons += quality + tie_break + [reason for reason in closing if reason]
    return {"strategy": chosen, "reasons": reasons, "excluded": excluded, "constraints": constraints.to_dict()}
