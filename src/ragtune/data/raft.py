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
NO_GOLD = "no passage in the knowledge base contains the answer"
CANDIDATES_PER_PASSAGE = 4  # hits searched for the gold passage and distractors: 4 × k


def build_raft_examples(examples: list[Example], retrieve: Retrieve, *, k: int, gold_fraction: float,
                        seed: int) -> tuple[list[Example], list[dict]]:
    """RAFT versions of Q&A examples, and the rows removed because no gold passage was found.

    The gold passage is the row's `context`, else the first retrieved hit containing the answer. With
    probability `gold_fraction` (seeded per example id) a row gets the gold passage at a random position among
    k - 1 distractors, and its answer cites it (" [n]"); otherwise it gets k distractors. Distractors are hits
    that do not contain the answer.
    """
    built, removed = [], []
    for example in examples:
        answer = _comparable(example.answer)
        hits = retrieve(example.question, CANDIDATES_PER_PASSAGE * k)
        gold = Hit(chunk_id=-1, source=example.origin, text=example.context, score=1.0) if example.context \
            else next((hit for hit in hits if answer in _comparable(hit.text)), None)
        if gold is None:
            removed.append({"origin": example.origin, "reason": NO_GOLD})
            continue
        gold_text = _comparable(gold.text)
        distractors = [hit for hit in hits if answer not in (text := _comparable(hit.text)) and text != gold_text]
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
    return built, removed


def _comparable(text: str) -> str:
    return normalize_text(text).casefold()
