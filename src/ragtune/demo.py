"""The bundled demo: a COVID-QA subset (12 articles, 282 questions; Apache-2.0, see demo_data/covidqa/README.md)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ragtune.evaluation.experiment import Budget, Experiment, load_experiment

# Sized for a 2-core laptop CPU, measured on one (bf16): 40 SFT steps of ~70-token rows took 1.7 min; a RAFT
# step (8 rows of ~660 tokens with 3 passages) ~35 s, hence only 6 of them.
DEMO_BUDGET = Budget(sft_max_steps=40, raft_max_steps=6, cpt_max_steps=20, batch_size=8, max_seq_length=768,
                     max_new_tokens=48, max_test_questions=30).model_dump()


def demo_corpus_dir() -> Path:
    """The bundled documents."""
    return Path(str(resources.files("ragtune") / "demo_data" / "covidqa" / "docs"))


def demo_questions(limit: int | None = None) -> list[dict]:
    """The bundled questions: `id`, `question`, `answer`, `answer_start`, `source`."""
    rows = [json.loads(line) for line in demo_questions_file().read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return rows[:limit] if limit is not None else rows


def demo_questions_file() -> Path:
    """The bundled questions as Q&A JSONL."""
    return Path(str(resources.files("ragtune") / "demo_data" / "covidqa" / "questions.jsonl"))


def demo_experiment(*, quick: bool = False, **overrides) -> Experiment:
    """`ragtune compare` on the bundled data with base, rag, ft, ft+rag and raft (the default strategies)."""
    return load_experiment(None, {"docs": str(demo_corpus_dir()), "train": str(demo_questions_file()),
                                  "quick": quick, "budget": DEMO_BUDGET, **overrides})
