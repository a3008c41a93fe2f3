"""`ragtune health` at scale, and what recording a served answer costs.

    python benchmarks/bench_health.py [--chunks 100000] [--answers 10000] [--out results.json]

The store is COVID-QA's real chunks and embeddings replicated with small embedding noise up to `--chunks` (as in
bench_retrieval_latency.py), with `--answers` recorded answers to real COVID-QA questions. Every replica is a near-copy
of an article, the worst case for the near-duplicate, family and crowding checks.

- health: `ragtune health --json` in its own process, wall time and peak RSS (/usr/bin/time -v). Targets: under a
  minute and under 2 GB at 100,000 chunks. Baseline in the same run: one plain pass reading every chunk's text and
  embedding from the store, in its own process (the least any check of every chunk must do).
- recording: `AnswerLog.record` per answer, p50/p95. Target: under 1 ms. Baseline in the same run: the hybrid search
  of the same question (query embedding excluded), the cheapest step of an answer.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_retrieval_latency import replicate
from covidqa import materialise

from ragtune.health.snapshots import take_snapshot
from ragtune.project import Project
from ragtune.rag import Answer
from ragtune.serve.answer_log import AnswerLog
from reporting import emit, percentiles

SCAN = ("import sqlite3, sys, numpy as np\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "n = sum(len(t) + np.frombuffer(e, np.float32).size for t, e in db.execute('SELECT text, embedding FROM chunks'))\n")


def timed_process(command: list[str]) -> dict:
    """Wall seconds and peak RSS (MB) of a command, from /usr/bin/time -v."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak_kb / 1024)}


def record_answers(project: Project, questions: list[str], count: int, seed: int = 0) -> dict:
    """Record `count` answers (random retrieved chunks, a citation, some feedback) and time each record()."""
    store, rng = project.kb.store, np.random.default_rng(seed)
    ids = store.chunk_ids()
    log = AnswerLog(store.path)
    times = []
    for number in range(count):
        hits = store.hits([(int(i), 0.5) for i in rng.choice(ids, 5, replace=False)])
        answer = Answer("An answer [1].", [{"number": 1, "source": hits[0].source, "chunk_id": hits[0].chunk_id}],
                        hits, {"total_s": float(rng.gamma(4, 0.5)), "prompt_tokens": 600, "completion_tokens": 60})
        question = questions[number % len(questions)]
        started = time.perf_counter()
        log.record(f"r{number}", "smollm2-135m", "rag", [{"role": "user", "content": question}], answer)
        times.append(time.perf_counter() - started)
        if number % 10 == 0:
            log.add_feedback(f"r{number}", "down" if number % 30 == 0 else "up", None)
    log.close()
    return percentiles(times, digits=3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--answers", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, questions = materialise(Path(tmp))
        project = Project(Path(tmp) / "project")
        project.ingest([str(docs)])
        replicate(project, args.chunks)
        project.kb.sync_indexes()  # as an ingest leaves them
        take_snapshot(project.kb.store)
        texts = [q["question"] for q in questions]
        _, timings = project.retriever.search_timed(texts[:200], k=5, mode="hybrid")
        recording = record_answers(project, texts, args.answers)
        recording["baseline_hybrid_search_p50_ms"] = percentiles(timings.per_query_search_seconds, 3)["p50_ms"]
        recording["ratio_p50"] = round(recording["p50_ms"] / recording["baseline_hybrid_search_p50_ms"], 3)
        database = str(project.kb.store.path)
        chunks = project.kb.store.counts()["chunks"]
        project.close()
        health = timed_process([sys.executable, "-m", "ragtune.cli", "health", "--project", str(Path(tmp) / "project"),
                                "--json"])
        scan = timed_process([sys.executable, "-c", SCAN, database])
        emit({"chunks": chunks, "answers": args.answers, "health": health, "baseline_full_scan": scan,
              "health_to_scan_time": round(health["seconds"] / scan["seconds"], 1), "recording": recording},
             args.out)


if __name__ == "__main__":
    main()
