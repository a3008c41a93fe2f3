"""Ingest throughput against the raw embedder on the same chunks, and the cost of re-ingesting unchanged data.

    python benchmarks/bench_ingest.py [--out results.json]

Baseline: `SentenceTransformer.encode` on exactly the chunk texts the ingest produced, same batch size.
Targets: ingest throughput >= 0.9x the raw embedder's; unchanged re-ingest < 5% of the first ingest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from covidqa import materialise

from ragtune.project import Project
from reporting import emit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, _ = materialise(Path(tmp))
        project = Project(Path(tmp) / "project")
        embedder = project.kb.embedder  # loaded before timing: both sides exclude model loading
        embedder.model.encode(["warm up"] * 8)
        first = project.ingest([str(docs)])
        texts = [row[0] for row in project.kb.store.db.execute("SELECT text FROM chunks ORDER BY id")]
        started = time.perf_counter()
        embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
        raw_seconds = time.perf_counter() - started
        again = project.ingest([str(docs)])
        project.close()
    results = {
        "documents": first.documents, "chunks": first.chunks,
        "ingest_seconds": round(first.seconds, 2), "ingest_embed_seconds": round(first.embed_seconds, 2),
        "ingest_chunks_per_second": round(first.chunks / first.seconds, 1),
        "raw_embedder_seconds": round(raw_seconds, 2),
        "raw_embedder_chunks_per_second": round(len(texts) / raw_seconds, 1),
        "throughput_ratio_vs_raw_embedder": round(raw_seconds / first.seconds, 3),
        "reingest_unchanged_seconds": round(again.seconds, 3),
        "reingest_fraction_of_first": round(again.seconds / first.seconds, 4),
    }
    emit(results, args.out)


if __name__ == "__main__":
    main()
