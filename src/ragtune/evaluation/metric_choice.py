"""Which metric decides a comparison: the one the user named, else the best fit for the test set's answers
(multiple choice → accuracy, short facts → token F1, long free text → ROUGE-L, code → chrF), skipping any metric
that carries no information on this run (every strategy at the floor or ceiling, or no variance)."""

from __future__ import annotations

import re
import statistics
from collections import Counter

from ragtune.evaluation.registry import METRICS, AnswerKind, deciding_order, metric_label

LONG_ANSWER_WORDS = 25  # a test set whose median reference is longer than this is long free text
CODE_SHARE = 0.5  # a test set is code when at least this share of its references look like code
FLOOR_CEILING_MARGIN = 0.02  # every strategy within this of 0 (or of 1) is "at the floor" ("at the ceiling")

_CALL = re.compile(r"[A-Za-z_][\w.]*\(")  # name( with no space: a call, not prose "(like this)"
_CODE_SIGNS = [
    _CALL,
    re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b"),  # snake_case
    re.compile(r"\b[a-z]+[A-Z][a-z]+\w*"),  # camelCase
    re.compile(r"\b[A-Za-z_]\w*\.[A-Za-z_]\w*\b(?!\s)"),  # dotted.name not ending a sentence
    re.compile(r"==|!=|<=|>=|->|=>|::|&&|\|\||[{}\[\];]|\w=\S"),  # operators, brackets, keyword=value
]
_PROSE_WORD = re.compile(r"^[A-Za-z][a-z]*[,.;:!?]?$")
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def looks_like_code(text: str) -> bool:
    """Whether an answer is code or another structured string rather than prose: it shows a code sign (a call,
    snake_case or camelCase name, dotted name, operator, brackets) and, outside its string literals, fewer than 60%
    of its words are plain words."""
    if not text.split() or not any(sign.search(text) for sign in _CODE_SIGNS):
        return False
    words = _STRING_LITERAL.sub("''", text).split()
    return sum(bool(_PROSE_WORD.match(word)) for word in words) / len(words) < 0.6


def answer_kind_counts(references: list[str], has_choices: list[bool]) -> dict[str, int]:
    """How many test answers are multiple choice, code, and other (prose)."""
    counts = Counter("choice" if choice else "code" if looks_like_code(reference) else "prose"
                     for reference, choice in zip(references, has_choices))
    return dict(counts)


def answer_kind(references: list[str], has_choices: list[bool]) -> tuple[AnswerKind, str]:
    """The kind of answers a test set has, and why: multiple choice when most rows have choices, code when at least
    half the references look like code, else short or long by the median reference length in words."""
    n = len(references)
    if n == 0:
        return "short", "there are no test questions"
    counts = answer_kind_counts(references, has_choices)
    if counts.get("choice", 0) * 2 > n:
        return "choice", f"{counts['choice']} of {n} test questions are multiple choice"
    if counts.get("code", 0) >= CODE_SHARE * n:
        return "code", f"{counts['code']} of {n} reference answers are code or structured strings"
    median = statistics.median(len(reference.split()) for reference in references)
    if median > LONG_ANSWER_WORDS:
        return "long", f"the median reference answer is {median:g} words (long free text, over {LONG_ANSWER_WORDS})"
    return "short", f"the median reference answer is {median:g} words (short factual, at most {LONG_ANSWER_WORDS})"


def uninformative_reason(scores: dict[str, list[float | None]]) -> str | None:
    """Why a metric cannot separate strategies on this run (None when it can): `scores[strategy]` lists its
    per-question scores in the same question order for every strategy."""
    columns = {name: [value for value in values if value is not None] for name, values in scores.items()}
    columns = {name: values for name, values in columns.items() if values}
    if not columns:
        return "no strategy has it"
    means = {name: sum(values) / len(values) for name, values in columns.items()}
    if all(mean <= FLOOR_CEILING_MARGIN for mean in means.values()):
        return f"every strategy is at the floor (all means ≤ {FLOOR_CEILING_MARGIN})"
    if all(mean >= 1 - FLOOR_CEILING_MARGIN for mean in means.values()):
        return f"every strategy is at the ceiling (all means ≥ {1 - FLOOR_CEILING_MARGIN})"
    rows = list(zip(*scores.values()))
    if len(columns) > 1 and all(len({value for value in row if value is not None}) <= 1 for row in rows):
        return "every strategy gave the same score on every question"
    return None


def choose_metric(references: list[str], has_choices: list[bool], per_strategy: dict[str, dict[str, list]],
                  requested: str | None = None) -> dict:
    """The deciding metric: `requested` when given, else the first informative metric fitting the answers (also
    when the requested one carries no information).

    `per_strategy[strategy][metric]` lists per-question scores. Returns metric (None when every candidate is
    uninformative), answer_kind, answer_kinds (the rows of each kind), reason, requested, candidates, skipped
    ([{metric, reason}]).
    """
    kind, why = answer_kind(references, has_choices)
    described = {"answer_kind": kind, "answer_kinds": answer_kind_counts(references, has_choices),
                 "requested": requested}
    candidates = list(dict.fromkeys([*([requested] if requested else []), *deciding_order(kind)]))
    skipped = []
    for name in candidates:
        problem = uninformative_reason({strategy: metrics.get(name, []) for strategy, metrics in per_strategy.items()})
        if problem is None:
            if name == requested:
                reason = f"{metric_label(name)} was chosen by the user (--metric {name})"
            else:
                reason = f"{metric_label(name)} fits: {why}; {METRICS[name].description}"
                if skipped:
                    reason += " (" + "; ".join(f"{metric_label(s['metric'])} skipped: {s['reason']}"
                                               for s in skipped) + ")"
            return {"metric": name, **described, "reason": reason, "candidates": candidates, "skipped": skipped}
        skipped.append({"metric": name, "reason": problem})
    return {"metric": None, **described, "candidates": candidates, "skipped": skipped,
            "reason": "no fitting metric carries information on this run: " + "; ".join(
                f"{metric_label(s['metric'])}: {s['reason']}" for s in skipped)}
