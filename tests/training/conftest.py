"""Fixtures for fine-tuning tests: a tiny Llama folder and a small, learnable Q&A dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_models import build_tiny_llama

COLOURS = ["red", "blue", "green", "black", "white", "pink"]


def qa_rows(count: int) -> list[dict]:
    """Short, regular question/answer pairs a tiny model can learn in a few dozen steps."""
    return [{"id": f"q{i}", "question": f"What colour is box {i}?", "answer": COLOURS[i % len(COLOURS)]}
            for i in range(count)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread: a second one only adds synchronisation (and stalls badly when
    another process holds a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def qa_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", qa_rows(40))
