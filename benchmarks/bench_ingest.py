"""Ingest throughput per embedder runtime (OpenVINO vs torch), the embedder's share of it, query-embedding latency,
peak memory, and the cost of re-ingesting unchanged data.

    python benchmarks/bench_ingest.py [--corpus DIR] [--runtimes torch,openvino] [--no-raw] [--out results.json]

Corpus: the COVID-QA development articles (default), or any folder (e.g. the Python docs, 23,868 chunks: see
BENCHMARKS.md). Each runtime ingests into a fresh project in its own process, so its peak RSS is its own; the
embedder is loaded before the clock starts on every side (the one-off OpenVINO export is timed separately).
Baseline: the torch runtime (sentence-transformers as packaged) in the same run.
Targets: OpenVINO ingest throughput >= 2x torch's; query-embedding p50 no worse; ingest throughput >= 0.9x the
runtime's own raw embedder; unchanged re-ingest < 5% of the first ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from covidqa import materialise

from reporting import emit

QUERIES = 200


def measure(runtime: str, corpus: Path | None, cache: Path, raw: bool) -> dict:
    """One runtime, in this process: load, ingest, raw-embed the same chunks (`raw`), query latency, re-ingest."""
    os.environ["RAGTUNE_CACHE"] = str(cache)
    from ragtune.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        if corpus is None:
            corpus, questions = materialise(Path(tmp))
            queries = [q["question"] for q in questions][:QUERIES]
        else:
            queries = None
        started = time.perf_counter()
        project = Project(Path(tmp) / "project", {"models": {"embedder_runtime": runtime}})
        embedder = project.kb.embedder
        load_seconds = time.perf_counter() - started
        embedder.encode(["warm up"] * 8)
        first = project.ingest([str(corpus)])
        texts = [row[0] for row in project.kb.store.db.execute("SELECT text FROM chunks ORDER BY id")]
        raw_seconds = None
        if raw:
            started = time.perf_counter()
            embedder.encode(texts)
            raw_seconds = time.perf_counter() - started
        queries = queries or texts[::max(1, len(texts) // QUERIES)][:QUERIES]
        latencies = []
        for query in queries:
            started = time.perf_counter()
            embedder.encode([query[:300]])
            latencies.append((time.perf_counter() - started) * 1000)
        again = project.ingest([str(corpus)])
        description = embedder.describe()
        project.close()
    latencies.sort()
    return {
        "runtime": description["runtime"], "precision": description["precision"],
        "verification": description["verification"], "load_seconds": round(load_seconds, 2),
        "documents": first.documents, "chunks": first.chunks,
        "ingest_seconds": round(first.seconds, 2), "ingest_embed_seconds": round(first.embed_seconds, 2),
        "ingest_chunks_per_second": round(first.chunks / first.seconds, 1),
        "raw_embedder_chunks_per_second": round(len(texts) / raw_seconds, 1) if raw else None,
        "ingest_vs_raw_embedder": round(raw_seconds / first.seconds, 3) if raw else None,
        "query_embedding_ms_p50": round(statistics.median(latencies), 2),
        "query_embedding_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "reingest_fraction_of_first": round(again.seconds / first.seconds, 4),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, help="a folder to ingest instead of the COVID-QA articles")
    parser.add_argument("--runtimes", default="torch,openvino")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-embedder pass (halves a big corpus's time)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one runtime in this process
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.corpus, args.cache, raw=not args.no_raw)))
        return
    with tempfile.TemporaryDirectory() as cache:
        corpus = (["--corpus", str(args.corpus)] if args.corpus else []) + (["--no-raw"] if args.no_raw else [])
        # The one-off export and check (timed on its own, then kept in the cache for the measured runs).
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from ragtune.knowledge.embedder import Embedder; Embedder('minilm-l6')"],
                       check=True, env={**os.environ, "RAGTUNE_CACHE": cache})
        export_seconds = time.perf_counter() - started
        runs = {}
        for runtime in args.runtimes.split(","):
            output = subprocess.run([sys.executable, __file__, "--one", runtime, "--cache", cache, *corpus],
                                    check=True, capture_output=True, text=True).stdout
            runs[runtime] = json.loads(output.strip().splitlines()[-1])
    results = {"corpus": str(args.corpus or "COVID-QA development articles"),
               "openvino_export_and_check_seconds": round(export_seconds, 1), "runs": runs}
    if {"torch", "openvino"} <= runs.keys():
        torch_run, fast = runs["torch"], runs["openvino"]
        results["openvino_vs_torch_ingest_throughput"] = round(
            fast["ingest_chunks_per_second"] / torch_run["ingest_chunks_per_second"], 2)
        results["openvino_vs_torch_query_p50"] = round(
            torch_run["query_embedding_ms_p50"] / fast["query_embedding_ms_p50"], 2)
    emit(results, args.out)


if __name__ == "__main__":
    main()
