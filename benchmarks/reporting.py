"""How every benchmark reports: JSON on stdout, and to a file when `--out` is given."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def emit(results: dict, out: Path | None) -> None:
    """Print `results` as JSON and write them to `out` if set."""
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        out.write_text(text)


def percentiles(seconds, digits: int = 2) -> dict:
    """p50 and p95 in milliseconds of timings given in seconds."""
    milliseconds = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(milliseconds, 50)), digits),
            "p95_ms": round(float(np.percentile(milliseconds, 95)), digits)}


def timed(call, *args, **kwargs) -> tuple[object, float]:
    """(what `call(*args, **kwargs)` returns, the seconds it took)."""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - started
