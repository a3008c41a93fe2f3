"""What an index kept beside the store pays to catch up after a small write, at 100,000 chunks: following the
store's change log against reading everything again (the baseline, what every index did before the log).

    python benchmarks/bench_index_sync.py [--chunks 100000] [--out results.json]

COVID-QA's real chunks replicated with embedding noise (as bench_retrieval_latency.py) in a SQLite project; then one
source is stored again (a changed document) and two copies of each index, both current before the write, are brought
up to date: one from the change log, the other (the baseline, as every index did before the log) by reading every
chunk again (the HNSW graph then updated by the diff, BM25 tokenized and built again).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_retrieval_latency import replicate
from covidqa import materialise

from ragtune.knowledge.lexical import LexicalIndex
from ragtune.knowledge.vectors import HnswVectorIndex
from ragtune.project import Project
from reporting import emit, timed


class WithoutLog:
    """The store as an index saw it before the change log."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def chunk_changes(self, since: int, until: int) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, _ = materialise(Path(tmp))
        project = Project(Path(tmp) / "project", {"storage": {"url": "sqlite"}})
        project.ingest([str(docs)])
        replicate(project, args.chunks)
        store = project.kb.store
        indexes = {"bm25": LexicalIndex, "hnsw": HnswVectorIndex}
        copies = {}
        for name, kind in indexes.items():
            for way in ("log", "full"):
                (Path(tmp) / f"{name}-{way}").mkdir()
                copies[name, way] = kind(Path(tmp) / f"{name}-{way}")
                copies[name, way].sync(store)
        root, key = sorted(store.sources())[-1]  # one document changes: stored again, its chunks get new ids
        row, documents = store.export_source(root, key)
        store.replace_sources([({**row, "fingerprint": "changed"}, documents)])
        results = {"chunks": store.counts()["chunks"], "changed_sources": 1}
        for name in indexes:
            _, log = timed(copies[name, "log"].sync, store)
            _, full = timed(copies[name, "full"].sync, WithoutLog(store))
            results[name] = {"change_log_seconds": round(log, 3), "read_everything_seconds": round(full, 3),
                             "speedup": round(full / log, 1)}
        project.close()
    emit(results, args.out)


if __name__ == "__main__":
    main()
