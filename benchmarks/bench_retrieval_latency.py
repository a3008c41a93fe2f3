"""Retrieval latency (query embedding excluded) at 100,000 chunks: p50 and p95 per mode.

    python benchmarks/bench_retrieval_latency.py [--chunks 100000] [--queries 200] [--out results.json]

The corpus is COVID-QA's real chunks and embeddings, replicated with small embedding noise until the store
holds the requested number of chunks (embedding 100,000 fresh passages would take 9 minutes on 2 cores and
measure the embedder, not retrieval). Target: p50 < 10 ms. Baseline in the same run: the same retriever with
exact (numpy) vector search instead of the HNSW index that ragtune uses at this size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from covidqa import materialise

from ragtune.knowledge.cleaning import NearDuplicateIndex
from ragtune.knowledge.store import PreparedDocument
from ragtune.knowledge.types import Chunk, RawDocument
from ragtune.knowledge.vectors import FlatVectorIndex
from ragtune.project import Project
from reporting import emit, percentiles


def replicate(project: Project, target_chunks: int, seed: int = 0) -> None:
    """Add noisy copies of the stored documents until the store holds `target_chunks` chunks (on either backend)."""
    store = project.kb.store
    rng = np.random.default_rng(seed)
    ids, matrix = store.embeddings()
    vector_of = dict(zip(ids.tolist(), matrix))
    document_texts = dict(store.iter_documents())
    by_document: dict[int, list] = {}
    for chunk_id, _, _, document_id, chunk_text in store.chunk_records():
        by_document.setdefault(document_id, []).append((document_texts[document_id], chunk_text, vector_of[chunk_id]))
    signatures = NearDuplicateIndex()  # each copy stands for a distinct document: a signature near no other's
    copy = 0
    while store.counts()["chunks"] < target_chunks:
        copy += 1
        batch = []
        for document_id, chunks in by_document.items():
            vectors = np.stack([v for _, _, v in chunks]) + rng.normal(0, 0.02, (len(chunks), chunks[0][2].size))
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            text = f"copy {copy} {chunks[0][0]}"
            prepared = PreparedDocument(
                RawDocument(source=f"copy{copy}/{document_id}", text=text), text, f"{copy}-{document_id}",
                signatures.signature(f"replica {copy} of document {document_id}"),
                [Chunk(t, i, 0, len(t), 0) for i, (_, t, _) in enumerate(chunks)], vectors.astype(np.float32))
            batch.append(({"key": f"copy{copy}/{document_id}.txt", "root": "replica", "kind": "file",
                           "fingerprint": "-", "size_bytes": 0, "status": "indexed", "note": None}, [prepared]))
        store.replace_sources(batch)
    project.kb.index.sync(store)


def latency(retriever, queries: list[str], mode: str) -> dict:
    """p50 and p95 of the per-query search time (query embedding excluded)."""
    _, timings = retriever.search_timed(queries, k=5, mode=mode)
    return percentiles(timings.per_query_search_seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, questions = materialise(Path(tmp))
        project = Project(Path(tmp) / "project")
        project.ingest([str(docs)])
        started = time.perf_counter()
        replicate(project, args.chunks)
        results = {"chunks": project.kb.store.counts()["chunks"],
                   "build_seconds": round(time.perf_counter() - started, 1), "modes": {}}
        queries = [q["question"] for q in questions[: args.queries]]
        project.search_batch(queries[:5], k=5)  # warm caches
        retriever = project.retriever
        results["vector_index"] = project.kb.index.describe()["kind"]
        for mode in ("dense", "lexical", "hybrid"):
            results["modes"][mode] = latency(retriever, queries, mode)
        flat = FlatVectorIndex(Path(tmp))
        flat.sync(project.kb.store)
        retriever.index = flat
        for mode in ("dense", "hybrid"):
            results["modes"][f"{mode}_exact_baseline"] = latency(retriever, queries, mode)
            results[f"{mode}_speedup_vs_exact"] = round(results["modes"][f"{mode}_exact_baseline"]["p50_ms"]
                                                        / results["modes"][mode]["p50_ms"], 2)
        project.close()
    emit(results, args.out)


if __name__ == "__main__":
    main()
