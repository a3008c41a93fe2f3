"""Dense search at 100,000 chunks: exact (flat) against HNSW latency and recall, HNSW build, load and update time.

    python benchmarks/bench_vector_index.py [--chunks 100000] [--queries 200] [--out results.json]

The vectors are synthetic but shaped like MiniLM sentence embeddings of COVID-QA (measured on its 3,395 chunks):
384 dimensions, a shared mean direction (norm 0.45 before normalising), a power-law spectrum (top 50 directions
hold about 60% of the variance) and topics; queries are fresh draws from the same topics. Searches ask for 50
candidates per query, what hybrid retrieval takes from the dense side; recall is against exact search.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ragtune.knowledge.vectors import FlatVectorIndex, HnswVectorIndex
from reporting import emit, percentiles

CANDIDATES = 50


def embedding_like(n: int, dimension: int = 384, topics: int = 2000, seed: int = 0) -> np.ndarray:
    """Normalised vectors clustered in topics, with a shared mean direction and a power-law spectrum."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, dimension + 1, dtype=np.float32) ** -0.45
    basis = np.linalg.qr(rng.standard_normal((dimension, dimension)))[0].astype(np.float32)
    centers = rng.standard_normal((topics, dimension), dtype=np.float32)
    x = (centers[rng.integers(0, topics, n)] + 1.5 * rng.standard_normal((n, dimension), dtype=np.float32)) * scale
    mean = rng.standard_normal(dimension).astype(np.float32)
    x = x @ basis + 0.45 * np.linalg.norm(x, axis=1, keepdims=True) * mean / np.linalg.norm(mean)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ArrayStore:
    """What an index reads from a KnowledgeStore, held in arrays."""

    identity = "benchmark"

    def __init__(self, ids: np.ndarray, matrix: np.ndarray):
        self.ids, self.matrix, self.generation = ids, matrix, 1

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, self.matrix

    def counts(self) -> dict:
        return {"chunks": len(self.ids)}

    def chunk_changes(self, since: int, until: int) -> None:
        return None  # no change log: an index reads every embedding


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def latencies(index, queries: np.ndarray, allowed: np.ndarray | None = None) -> tuple[dict, list]:
    """p50/p95 in ms of one query at a time, and the results."""
    index.search(queries[:5], CANDIDATES, allowed)  # warm up
    results, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        results += index.search(query[None], CANDIDATES, allowed)
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds, digits=3), results


def recall(found: list, exact: list, k: int) -> float:
    return round(float(np.mean([len({c for c, _ in f[:k]} & {c for c, _ in e[:k]}) / k
                                for f, e in zip(found, exact)])), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    vectors = embedding_like(args.chunks + args.queries)
    store = ArrayStore(np.arange(1, args.chunks + 1, dtype=np.int64), vectors[:args.chunks])
    queries = vectors[args.chunks:]
    with tempfile.TemporaryDirectory() as tmp:
        flat = FlatVectorIndex(Path(tmp))
        flat.sync(store)
        hnsw = HnswVectorIndex(Path(tmp))
        build = timed(lambda: hnsw.sync(store))
        hnsw = HnswVectorIndex(Path(tmp))  # a new process: loads the saved graph, vectors memory-mapped
        load = timed(lambda: hnsw.sync(store))
        flat_latency, exact = latencies(flat, queries)
        hnsw_latency, found = latencies(hnsw, queries)
        allowed = store.ids[np.random.default_rng(1).random(args.chunks) < 0.3]  # a metadata filter keeping 30%
        filtered_latency, filtered = latencies(hnsw, queries, allowed)
        assert all(np.isin([c for c, _ in row], allowed).all() for row in filtered)
        # One ingest changing 1% of the chunks: 500 removed, 500 added.
        keep = np.ones(args.chunks, dtype=bool)
        keep[:: 200] = False
        store.ids = np.concatenate([store.ids[keep], args.chunks + 1 + np.arange((~keep).sum())])
        store.matrix = np.concatenate([store.matrix[keep], embedding_like(int((~keep).sum()), seed=2)])
        store.generation += 1
        update = timed(lambda: hnsw.sync(store))
        description = hnsw.describe()
    results = {
        "chunks": args.chunks, "dimension": vectors.shape[1], "queries": args.queries, "candidates": CANDIDATES,
        "flat": flat_latency,
        "hnsw": {**hnsw_latency, "recall_at_10": recall(found, exact, 10), "recall_at_50": recall(found, exact, 50),
                 "build_seconds": round(build, 2), "load_seconds": round(load, 3),
                 "update_1_percent_seconds": round(update, 2), "bytes": description["bytes"],
                 "filtered_30_percent": filtered_latency},
        "flat_p50_over_hnsw_p50": round(flat_latency["p50_ms"] / hnsw_latency["p50_ms"], 1),
    }
    emit(results, args.out)


if __name__ == "__main__":
    main()
