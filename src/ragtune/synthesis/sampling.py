"""Which chunks the question set is drawn from, and which answer each item asks about.

Chunks are spread across documents in proportion to their size (their chunk count; `coverage="even"` gives every
document the same share), evenly spaced inside a document from a seeded offset. Each planned item has a kind:
a factual lookup (a number with its unit, a date or a name), a why/how question (a sentence that gives a cause or
a means) or a question whose answer spans two adjacent sentences. The answer is a span of the chunk, chosen here;
the generator writes the question for it (answer-first question generation: the packaged 135M model cannot keep
a "Question: ... Answer: ..." format, BENCHMARKS.md).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

KINDS = ("factual", "why", "two_sentences")
DEFAULT_MIX = {"factual": 0.5, "why": 0.3, "two_sentences": 0.2}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_QUANTITY = re.compile(r"(?<![\w.-])\d+(?:[.,]\d+)?\s?(?:%|per ?cent|percent|days?|weeks?|months?|years?|hours?|"
                       r"patients|cases|people|deaths|children|countries|million|billion|mg|ml|kg|km)\b", re.I)
_YEAR_OR_DATE = re.compile(r"\b(?:\d{1,2} )?(?:January|February|March|April|May|June|July|August|September|"
                           r"October|November|December)(?: \d{1,2})?,? (?:19|20)\d{2}\b|(?<![\w.-])(?:19|20)\d{2}\b")
_NAME = re.compile(r"(?<=[a-z,;] )(?:[A-Z][\w-]+(?: (?:of |and )?[A-Z][\w-]+)+)")
_CAUSE = re.compile(r"\b(because|due to|caused by|leads? to|results? in|by (?:using|means)|through|therefore|"
                    r"in order to|so that|as a result)\b", re.I)
MIN_SENTENCE_WORDS = 6


@dataclass(frozen=True)
class PlannedItem:
    """One item to generate: the chunk, the kind, and the answer chosen in it (`start`/`end`: its span)."""

    index: int
    chunk_id: int
    source: str
    kind: str
    chunk: str
    answer: str
    start: int
    end: int
    evidence: str  # the sentence(s) the answer comes from, shown to the generator


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def choose_answer(chunk: str, kind: str, rng: random.Random) -> tuple[str, int, int, str] | None:
    """(answer, start, end, evidence) of a `kind` item in `chunk`, or None when the chunk has no such answer."""
    spans = [(a, b) for a, b in sentences(chunk) if len(chunk[a:b].split()) >= MIN_SENTENCE_WORDS]
    if kind == "factual":
        candidates = [(m.start() + a, m.end() + a, a, b) for a, b in spans for pattern in (_QUANTITY, _YEAR_OR_DATE, _NAME)
                      for m in pattern.finditer(chunk[a:b])]
        if not candidates:
            return None
        start, end, a, b = rng.choice(sorted(set(candidates)))
        while end > start and chunk[end - 1] in " ,;":
            end -= 1
        return chunk[start:end], start, end, chunk[a:b]
    if kind == "why":
        causal = [(a, b) for a, b in spans if _CAUSE.search(chunk[a:b])]
        if not causal:
            return None
        a, b = rng.choice(causal)
        return chunk[a:b], a, b, chunk[a:b]
    pairs = list(zip(spans, spans[1:]))
    if not pairs:
        return None
    (a, _), (_, b) = rng.choice(pairs)
    return chunk[a:b], a, b, chunk[a:b]


def plan_items(chunks: list[tuple[int, str, str]], n: int, *, mix: dict[str, float] | None = None,
               coverage: str = "size", seed: int = 0) -> list[PlannedItem]:
    """Up to `n` items over `chunks` ((chunk id, source, text) in store order): documents covered in proportion to
    their chunk count (or evenly), kinds in the proportions of `mix`. A chunk without an answer of the planned kind
    gets a kind it has; one without any is passed over for the next chunk of its document. A document with fewer
    chunks than its share is asked about again in other kinds."""
    mix = mix or DEFAULT_MIX
    rng = random.Random(seed)
    by_source: dict[str, list[tuple[int, str]]] = {}
    for chunk_id, source, text in chunks:
        by_source.setdefault(source, []).append((chunk_id, text))
    quotas = _allocate(n, {source: (len(items) if coverage == "size" else 1) for source, items in by_source.items()})
    kinds = _kinds(n, mix, rng)
    planned: list[PlannedItem] = []
    for source, quota in quotas.items():
        pool = by_source[source]
        offset, step = rng.random(), len(pool) / max(quota, 1)
        spaced = list(dict.fromkeys(int((offset + i) * step) % len(pool) for i in range(quota)))
        order = [pool[i] for i in spaced] + [entry for i, entry in enumerate(pool) if i not in set(spaced)]
        taken, used = 0, set()
        for chunk_id, text in order * len(KINDS):  # a document with fewer chunks than its share: other kinds
            if taken == quota:
                break
            wanted = kinds.pop() if kinds else KINDS[0]
            for kind in (wanted, *(k for k in KINDS if k != wanted)):
                chosen = None if (chunk_id, kind) in used else choose_answer(text, kind, rng)
                if chosen:
                    used.add((chunk_id, kind))
                    planned.append(PlannedItem(len(planned), chunk_id, source, kind, text, *chosen))
                    taken += 1
                    break
            else:
                kinds.append(wanted)  # nothing (more) to ask about this chunk: the next one gets the kind
    return planned


def _allocate(n: int, weights: dict[str, int]) -> dict[str, int]:
    """`n` split in proportion to `weights` by largest remainder (ties by name, for determinism)."""
    total = sum(weights.values())
    exact = {key: n * weight / total for key, weight in weights.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    for key in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), k))[: n - sum(quotas.values())]:
        quotas[key] += 1
    return quotas


def _kinds(n: int, mix: dict[str, float], rng: random.Random) -> list[str]:
    counts = _allocate(n, {kind: round(share * 1000) for kind, share in mix.items() if share > 0})
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds
