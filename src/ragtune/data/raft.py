"""RAFT (retrieval-augmented fine-tuning) rows: each question with retrieved passages, the gold one among
distractors in most rows and left out in the others, in the prompt RAG uses at inference."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Callable

from ragtune.data.examples import Example
from ragtune.knowledge.cleaning import normalize_text
from ragtune.knowledge.types import Hit
from ragtune.prompts import build_messages

Retrieve = Callable[[str, int], list[Hit]]
NO_GOLD = "no gold passage"  # the reason a row is removed; its detail says what was looked for (GoldFinder.missing)
CANDIDATES_PER_PASSAGE = 4  # hits searched for the gold passage and distractors: 4 × k
GOLD_BY = ("context", "chunk_id", "source", "answer_text", "similar_to_answer")
SIMILARITY_FLOOR = 0.6  # cosine of answer and passage embeddings below which a passage is not taken as gold


class GoldFinder:
    """Which passage holds a row's answer, and how that was decided, in this order: the row's `context`; the chunk
    it names (`chunk_id`, as synthesized rows do); the best retrieved hit from the document it names (`source`);
    a hit containing the answer's text; the hit most similar to the answer (embeddings, at least
    SIMILARITY_FLOOR), for abstractive answers that copy no passage."""

    def __init__(self, chunk_by_id: Callable[[int], Hit | None] = lambda _: None,
                 similarity: Callable[[str, list[str]], list[float]] | None = None):
        self.chunk_by_id, self.similarity = chunk_by_id, similarity

    def find(self, example: Example, hits: list[Hit]) -> tuple[Hit | None, str | None]:
        if example.context:
            return Hit(chunk_id=-1, source=example.origin, text=example.context, score=1.0), "context"
        if example.chunk_id is not None and (chunk := self.chunk_by_id(example.chunk_id)) is not None:
            return chunk, "chunk_id"
        if example.source:
            named = [hit for hit in hits if hit.source == example.source or hit.source.endswith("/" + example.source)]
            if named:
                return named[0], "source"
        answer = _comparable(example.answer)
        if (containing := next((hit for hit in hits if answer in _comparable(hit.text)), None)) is not None:
            return containing, "answer_text"
        if self.similarity and hits:
            scores = self.similarity(example.answer, [hit.text for hit in hits])
            best = max(range(len(hits)), key=scores.__getitem__)
            if scores[best] >= SIMILARITY_FLOOR:
                return hits[best], "similar_to_answer"
        return None, None

    def missing(self, example: Example, hits: list[Hit]) -> str:
        """Why `find` found no gold passage for a row, in the terms of what the row names."""
        retrieved = f"none of the {len(hits)} passages retrieved for its question"
        matches = "contains or resembles its answer" if self.similarity else "contains its answer"
        unknown_chunk = f"its chunk {example.chunk_id} was not found; " if example.chunk_id is not None else ""
        if example.source:
            return f"{unknown_chunk}{retrieved} comes from its source {example.source!r} or {matches}"
        return f"{unknown_chunk or 'it names no chunk or source; '}{retrieved} {matches}"


def build_raft_examples(examples: list[Example], retrieve: Retrieve, *, k: int, gold_fraction: float,
                        seed: int, gold_finder: GoldFinder | None = None
                        ) -> tuple[list[Example], list[dict], dict[str, int]]:
    """RAFT versions of Q&A examples, the rows removed because no gold passage was found, and how many rows had
    their gold passage chosen each way (GOLD_BY, see GoldFinder).

    With probability `gold_fraction` (seeded per example id) a row gets the gold passage at a random position
    among k - 1 distractors, and its answer cites it (" [n]"); otherwise it gets k distractors. Distractors are
    hits that are not the gold passage and do not contain the answer.
    """
    finder = gold_finder or GoldFinder()
    built, removed, chosen_by = [], [], dict.fromkeys(GOLD_BY, 0)
    for example in examples:
        answer = _comparable(example.answer)
        hits = retrieve(example.question, CANDIDATES_PER_PASSAGE * k)
        gold, how = finder.find(example, hits)
        if gold is None:
            removed.append({"origin": example.origin, "reason": NO_GOLD, "detail": finder.missing(example, hits)})
            continue
        chosen_by[how] += 1
        gold_text = _comparable(gold.text)
        distractors = [hit for hit in hits if answer not in (text := _comparable(hit.text)) and text != gold_text
                       and hit.chunk_id != gold.chunk_id]
        rng = random.Random(f"{seed}:{example.id}")
        if rng.random() < gold_fraction:
            passages = distractors[:k - 1]
            position = rng.randrange(len(passages) + 1)
            passages.insert(position, gold)
            target = f"{example.answer} [{position + 1}]"
        else:
            passages, target = distractors[:k], example.answer
        messages = build_messages(example.question, passages) + [{"role": "assistant", "content": target}]
        built.append(replace(example, messages=messages))
    return built, removed, chosen_by


def _comparable(text: str) -> str:
    return normalize_text(text).casefold()
