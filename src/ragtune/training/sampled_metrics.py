"""Sampled generation metrics on validation rows: the fine-tuned model answers a few of them after training.

Memory-bounded: one row at a time on the serving engine, with a cap on new tokens, however large the set.
"""

from __future__ import annotations

from pathlib import Path

from ragtune.data import Example
from ragtune.evaluation.metrics import exact_match, token_f1
from ragtune.models.base import GenerationConfig

MAX_NEW_TOKENS = 64


def sampled_generation_metrics(run_dir: Path, examples: list[Example], samples: int) -> dict | None:
    """Exact match and token F1 of the run's answers to the first `samples` chat examples (None when none)."""
    from ragtune.models.loading import load_generator

    rows = [example for example in examples if example.messages][:samples]
    if not rows:
        return None
    engine = load_generator(str(run_dir))
    config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    scores = []
    for example in rows:
        reference = example.answer or example.messages[-1]["content"]
        answer = engine.generate(example.messages[:-1], config).text.strip()
        scores.append((exact_match(answer, reference), token_f1(answer, reference), example.id, answer))
    return {
        "rows": len(scores),
        "exact_match": sum(s[0] for s in scores) / len(scores),
        "f1": sum(s[1] for s in scores) / len(scores),
        "answers": [{"id": row_id, "answer": answer} for _, _, row_id, answer in scores],
    }
