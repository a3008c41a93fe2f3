"""The prompts every strategy shares, so that comparisons differ only in model and context."""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ragtune.knowledge.types import Hit
from ragtune.models.base import Message

GROUNDED_SYSTEM = (
    "You are a helpful assistant. Answer the question using only the numbered passages. "
    "Cite the passages you use by their numbers in square brackets, like [1]. "
    "If the passages do not contain the answer, say that you do not know.")
CLOSED_BOOK_SYSTEM = "You are a helpful assistant. Answer the question concisely and factually."
CITATION_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [1] or [2, 3]: the passages an answer cites


def format_passage(number: int, hit: Hit) -> str:
    """A numbered passage; sources are left out (small models copy file names into answers), citations map
    numbers back to them."""
    return f"[{number}] {hit.text}"


def build_messages(question: str, passages: list[Hit], history: Sequence[Message] = ()) -> list[Message]:
    """Chat messages with the numbered passages before the question (closed book when there are none).

    `history`: the conversation's earlier turns, kept as given after the instructions; a system message among them
    is added to ragtune's instructions (which ground the answer and say how to cite).
    """
    system = GROUNDED_SYSTEM if passages else CLOSED_BOOK_SYSTEM
    system = "\n\n".join([system] + [m["content"] for m in history if m["role"] == "system"])
    turns = [{"role": m["role"], "content": m["content"]} for m in history if m["role"] != "system"]
    if not passages:
        return [{"role": "system", "content": system}, *turns, {"role": "user", "content": f"Question: {question}"}]
    context = "\n\n".join(format_passage(i, hit) for i, hit in enumerate(passages, start=1))
    return [{"role": "system", "content": system}, *turns,
            {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"}]


def fit_passages(question: str, hits: list[Hit], budget_tokens: int, count_tokens: Callable[[str], int]) -> list[Hit]:
    """The leading hits whose prompt fits in `budget_tokens`; the first is always kept (cut to fit if needed)."""
    kept: list[Hit] = []
    for hit in hits:
        if count_tokens(_prompt_text(question, kept + [hit])) <= budget_tokens:
            kept.append(hit)
        elif not kept:
            spare = budget_tokens - count_tokens(_prompt_text(question, []))
            words = hit.text.split()
            while words and count_tokens(" ".join(words)) > spare:
                words = words[: int(len(words) * 0.8)]
            kept.append(Hit(**{**hit.__dict__, "text": " ".join(words)}))
            break
        else:
            break
    return kept


def fit_history(history: Sequence[Message], budget_tokens: int, count_tokens: Callable[[str], int]) -> list[Message]:
    """The conversation's earlier turns within `budget_tokens`, the oldest dropped first (system messages are
    kept); an assistant turn's citation markers are removed, since they numbered passages no longer shown."""
    turns = [{"role": m["role"], "content": m["content"] if m["role"] != "assistant"
              else " ".join(CITATION_MARKER.sub("", m["content"]).split())} for m in history]
    while sum(count_tokens(m["content"]) for m in turns) > budget_tokens:
        oldest = next((i for i, m in enumerate(turns) if m["role"] != "system"), None)
        if oldest is None:
            break
        del turns[oldest]
    return turns


def _prompt_text(question: str, passages: list[Hit]) -> str:
    return "\n".join(m["content"] for m in build_messages(question, passages))
