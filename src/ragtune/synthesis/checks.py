"""Every synthesized item checked, every rejection with its reason: format, question form, length, an answer given
away by its question, support by the chunk, near-duplicates, and the round trip through the project's retriever."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragtune.evaluation.metrics import content_tokens, normalize_answer
from ragtune.knowledge.cleaning import NearDuplicateIndex

REASONS = {
    "malformed": "the generator's reply holds no question",
    "not_a_question": "not a question (no question mark)",
    "too_short": "the question is too short to be specific",
    "too_long": "the question or the answer is too long",
    "answer_in_question": "the question already contains its answer",
    "wrong_answer_type": "the answer is not what the question asks for (a number, a share, a date)",
    "unsupported": "the answer is not supported by its chunk",
    "near_duplicate": "a near-duplicate of a question already kept",
    "no_round_trip": "the question does not retrieve its source chunk in the top k",
}


# What a question's opening asks for, and what its answer must then contain.
_EXPECTED = [
    (re.compile(r"\bwhat (?:percentage|percent|share|proportion)\b", re.I), re.compile(r"%|\bper ?cent\b", re.I)),
    (re.compile(r"\bhow (?:many|much)\b|\bwhat (?:number|amount)\b", re.I),
     re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|million|billion)\b",
                re.I)),
    (re.compile(r"^\s*when\b|\bwhat (?:year|date|month|day)\b|\bin which year\b", re.I),
     re.compile(r"\d|\b(?:january|february|march|april|may|june|july|august|september|october|november|"
                r"december|spring|summer|autumn|winter)\b", re.I)),
]


# What an answer that is a date, or a quantity, must be asked by.
_DATE_ANSWER = re.compile(r"^\W*(?:in |on |since )?(?:\d{1,2} )?(?:(?:January|February|March|April|May|June|July|"
                          r"August|September|October|November|December)\b[\s\d,]*|(?:19|20)\d{2}\W*$)", re.I)
_QUANTITY_ANSWER = re.compile(r"^\W*(?:about |around |over |under |up to )?\d", re.I)
_ASKS_WHEN = re.compile(r"\bwhen\b|\bwhat (?:year|date|month|day|time)\b|\bin which (?:year|month)\b", re.I)
_ASKS_QUANTITY = re.compile(r"\bhow (?:many|much|long|often|old|large|far|high)\b|\bwhat (?:is |was |were |are )?"
                            r"(?:the )?(?:percentage|proportion|share|number|mean|median|average|rate|duration|"
                            r"age|amount|dose|size|length|period|count|total)\b", re.I)


def answer_type_matches(question: str, answer: str) -> bool:
    """False when the question asks for a number, a share or a date and the answer holds none, or when a short
    answer is a date or a quantity and the question does not ask when or how much."""
    if not all(answer_pattern.search(answer) for asks, answer_pattern in _EXPECTED if asks.search(question)):
        return False
    if len(answer.split()) <= 4:
        if _DATE_ANSWER.search(answer):
            return bool(_ASKS_WHEN.search(question))
        if _QUANTITY_ANSWER.search(answer):
            return bool(_ASKS_QUANTITY.search(question))
    return True


@dataclass(frozen=True)
class CheckSettings:
    min_question_words: int = 4
    max_question_words: int = 40
    max_answer_words: int = 80
    support: float = 0.8  # share of the answer's content words the chunk must contain
    # share of the answer's content words the question may hold: above it, the question restates its answer
    # ("Why do X need Y?" -> "X need Y because ..."); 0.6 rejects the 3 of 53 such items kept on COVID-QA
    answer_overlap: float = 0.6
    duplicate_jaccard: float = 0.8  # word-set Jaccard above which two questions are near-duplicates
    round_trip_k: int = 5


@dataclass
class CheckedItem:
    """A synthesized item and its verdict: `reason` is None when kept, else a key of REASONS."""

    fields: dict
    reason: str | None = None


def check_alone(question: str | None, answer: str, chunk: str, settings: CheckSettings) -> str | None:
    """The first check one item fails by itself (no other item or index needed), or None."""
    if not question:
        return "malformed"
    if not question.rstrip().endswith("?"):
        return "not_a_question"
    words = len(question.split())
    if words < settings.min_question_words:
        return "too_short"
    if words > settings.max_question_words or len(answer.split()) > settings.max_answer_words:
        return "too_long"
    answer_words, question_words = set(content_tokens(answer)), set(content_tokens(question))
    restated = answer_words and len(answer_words & question_words) / len(answer_words) > settings.answer_overlap
    if normalize_answer(answer) in normalize_answer(question) or restated:
        return "answer_in_question"
    if not answer_type_matches(question, answer):
        return "wrong_answer_type"
    chunk_words = set(content_tokens(chunk))
    if answer_words and len(answer_words & chunk_words) / len(answer_words) < settings.support:
        return "unsupported"
    return None


def check_items(items: list[CheckedItem], retriever, settings: CheckSettings) -> list[CheckedItem]:
    """Run every check in order: each item alone, then near-duplicates among the survivors (first kept wins),
    then the round trip (the project's retriever must rank the item's chunk in its top `round_trip_k`)."""
    for item in items:
        item.reason = check_alone(item.fields.get("question"), item.fields["answer"], item.fields["chunk"], settings)
    duplicates = NearDuplicateIndex(threshold=settings.duplicate_jaccard)
    for item in items:
        if item.reason:
            continue
        signature = duplicates.signature(item.fields["question"])
        if duplicates.find(signature) is not None:
            item.reason = "near_duplicate"
        else:
            duplicates.add(str(item.fields["index"]), signature)
    survivors = [item for item in items if not item.reason]
    if survivors:
        ranked, _ = retriever.search_timed([item.fields["question"] for item in survivors], k=settings.round_trip_k)
        for item, hits in zip(survivors, ranked):
            if item.fields["chunk_id"] not in {hit.chunk_id for hit in hits}:
                item.reason = "no_round_trip"
    return items
