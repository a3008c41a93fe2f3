"""A finished comparison's folder for the arena's tests: results.json with every strategy's answers to a few
questions (with the passages they cite), and the comparison's project folder that keeps the votes."""

from __future__ import annotations

from pathlib import Path

from ragtune.evaluation.results import SCHEMA_VERSION, Results
from ragtune.workspace import Workspace

QUESTIONS = [("q1", "How long is the Nile?", "about 6,650 km"),
             ("q2", "Where is Olympus Mons?", "on Mars"),
             ("q3", "When was the bridge finished?", "in 1932"),
             ("q4", "What do bees tell with their dance?", "where flowers are"),
             ("q5", "How high are the tides in the Bay of Fundy?", "16 metres")]


def answer_of(strategy: str, question_id: str) -> str:
    """Each strategy's recognisable answer (the browser and terminal tests read the strategy back from it)."""
    return f"{strategy} says: answer to {question_id} [1]."


def write_comparison(directory: Path, strategies: tuple[str, ...] = ("base", "rag", "ft"), *, f1=None) -> Path:
    """A comparison folder as `ragtune compare --out DIRECTORY` leaves it (results.json and project/); `f1` maps
    a strategy to its F1 (default 0.30 for each)."""
    f1 = f1 or {}

    def measure(value: float) -> dict:
        return {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05}

    entries = {name: {
        "description": name, "model": "tiny", "uses_retrieval": name != "base" and name != "ft", "k": 3,
        "metrics": {"f1": measure(f1.get(name, 0.3))},
        "cost": {"prompt_tokens_per_question": 100.0, "completion_tokens_per_question": 10.0,
                 "machine_seconds_per_1000_questions": 100.0, "cost_per_1000_questions": 0.0},
        "latency": {"p50_s": 0.5, "p95_s": 1.0, "mean_s": 0.6, "tokens_per_second": 20.0}} for name in strategies}
    # per-question F1 that varies, as real scores do: 5 questions cannot separate the strategies
    rows = [{"id": item, "question": question, "reference": reference,
             "answers": {name: {"answer": answer_of(name, item), "latency_s": 0.4,
                                "scores": {"f1": ((row * 7 + column * 3) % 5) / 5},
                                "passages": [{"source": f"{item}.txt", "text": f"The passage about {question}"}]}
                         for column, name in enumerate(strategies)}}
            for row, (item, question, reference) in enumerate(QUESTIONS)]
    results = Results.model_validate({
        "schema_version": SCHEMA_VERSION, "created": "2026-12-06T10:00:00+00:00", "seed": 3,
        "config": {"model": "tiny", "method": "lora", "k": 3, "docs": "docs/", "train": "train.jsonl",
                   "test": "split of train", "price_per_hour": 0.0, "quick": True},
        "metric_choice": {"metric": "f1", "answer_kind": "short", "reason": "F1 fits: short answers",
                          "candidates": ["f1"]},
        "test_set": {"n": len(rows)}, "strategies": entries, "per_question": rows})
    directory.mkdir(parents=True, exist_ok=True)
    results.save(directory)
    Workspace.open(directory / "project").state_dir  # as ingest leaves it
    return directory
