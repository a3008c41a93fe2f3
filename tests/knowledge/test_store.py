"""The SQLite store under concurrent use."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from ragtune.knowledge.store import KnowledgeStore


def _open_store_together(path: str, barrier) -> None:
    barrier.wait()
    KnowledgeStore(Path(path)).close()


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """The ranks of a multi-process training run open the same, not yet created, store at the same moment."""
    context = multiprocessing.get_context("fork")
    for round_number in range(12):
        path = tmp_path / f"round-{round_number}" / "kb.sqlite"
        path.parent.mkdir()
        barrier = context.Barrier(3)
        processes = [context.Process(target=_open_store_together, args=(str(path), barrier)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        assert [process.exitcode for process in processes] == [0, 0, 0], f"round {round_number}"
        store = KnowledgeStore(path)
        assert store.get_meta("schema_version") is not None and store.generation == 0
        store.close()
