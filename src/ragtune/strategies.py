"""Strategies: a model variant × a context source. Swapping the strategy is the only difference between two
evaluations (same questions, same prompts, same decoding), which is what makes a comparison fair."""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.errors import RagtuneError


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    training_objective: str | None  # the fine-tuning run it needs (sft, cpt, raft), None for the base model
    uses_retrieval: bool


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("base", "the base model, closed book", None, False),
    Strategy("rag", "the base model answering from retrieved passages", None, True),
    Strategy("ft", "fine-tuned on the training questions (supervised), closed book", "sft", False),
    Strategy("ft-docs", "continued pre-training on the documents, closed book", "cpt", False),
    Strategy("ft+rag", "the supervised fine-tune answering from retrieved passages", "sft", True),
    Strategy("raft", "retrieval-augmented fine-tuning (RAFT), used with retrieval", "raft", True),
)}


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`, or an error listing the choices."""
    if name not in STRATEGIES:
        raise RagtuneError(f"unknown strategy '{name}'", f"choose among: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
