"""Helpers for the data tests: writing JSONL files and generating distinct Q&A rows."""

from __future__ import annotations

import json
import random
from pathlib import Path


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows as JSONL lines; strings are written as they are (for malformed lines)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def qa_rows(count: int, *, seed: int = 0, prefix: str = "q", words: int = 8) -> list[dict]:
    """`count` Q&A rows of random words, far from being near duplicates of each other."""
    rng = random.Random(seed)
    vocabulary = [f"{prefix}word{i}" for i in range(400)]
    return [{"id": f"{prefix}{i}", "question": " ".join(rng.sample(vocabulary, words)) + "?",
             "answer": " ".join(rng.sample(vocabulary, 3))} for i in range(count)]
