"""Cost of a strategy: training, index and per-question figures in machine time, and money at a user-set price per
machine hour (without one, strategies are compared on machine time)."""

from __future__ import annotations

from pathlib import Path

SECONDS_PER_HOUR = 3600


def directory_mb(path: Path) -> float:
    """Size of the files under `path` (0 when it does not exist), in MiB."""
    if not path.exists():
        return 0.0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1024 ** 2


def strategy_cost(evaluation: dict, run: dict | None, index: dict | None, price_per_hour: float) -> dict:
    """The cost block of a strategy's results: what building it took and what answering costs."""
    mean_latency = evaluation["latency"]["mean_s"]
    train_seconds = run["train_seconds"] if run else None
    return {
        "train_seconds": train_seconds,
        "train_peak_memory_gb": run["peak_memory_gb"] if run else None,
        "trainable_parameters": run["trainable_parameters"] if run else None,
        "adapter_mb": round(run["adapter_mb"], 3) if run else None,
        "index_seconds": round(index["seconds"], 3) if index else None,
        "index_mb": round(index["index_mb"], 3) if index else None,
        "prompt_tokens_per_question": evaluation["usage"]["prompt_tokens_per_question"],
        "completion_tokens_per_question": evaluation["usage"]["completion_tokens_per_question"],
        "machine_seconds_per_1000_questions": mean_latency * 1000,
        "cost_per_1000_questions": mean_latency * 1000 / SECONDS_PER_HOUR * price_per_hour,
        "training_cost": train_seconds / SECONDS_PER_HOUR * price_per_hour if train_seconds is not None else None,
    }
