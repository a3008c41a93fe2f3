"""Retrieval quality on COVID-QA: recall@5 and MRR@10 of the chunk holding the answer span, per mode.

    python benchmarks/bench_retrieval_quality.py [--embedder-runtime auto|openvino|torch] [--out results.json]

A chunk "holds the answer" when it belongs to the gold article and contains the whole answer text
(whitespace-insensitive); questions whose answer no single chunk holds are counted and left out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from covidqa import materialise, squash

from ragtune.project import Project
from reporting import emit


def answer_chunks(project: Project, questions: list[dict]) -> dict[str, set[int]]:
    rows = project.kb.store.db.execute(
        "SELECT c.id, s.key, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
        "JOIN sources s ON s.id = d.source_id").fetchall()
    by_source: dict[str, list[tuple[int, str]]] = {}
    for chunk_id, key, text in rows:
        by_source.setdefault(key, []).append((chunk_id, squash(text)))
    gold = {}
    for q in questions:
        answer = squash(q["answer"])
        ids = {cid for cid, text in by_source.get(q["source"], []) if answer in text}
        if ids:
            gold[q["id"]] = ids
    return gold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedder-runtime", default="auto", choices=["auto", "openvino", "torch"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, questions = materialise(Path(tmp))
        project = Project(Path(tmp) / "project", {"models": {"embedder_runtime": args.embedder_runtime}})
        report = project.ingest([str(docs)])
        gold = answer_chunks(project, questions)
        asked = [q for q in questions if q["id"] in gold]
        results = {"embedder": project.kb.embedder.describe(), "questions": len(questions), "scored": len(asked), "chunks": report.chunks, "modes": {}}
        for mode in ("dense", "lexical", "hybrid"):
            started = time.perf_counter()
            rankings = project.search_batch([q["question"] for q in asked], k=10, mode=mode)
            recall5 = mrr = 0.0
            for q, hits in zip(asked, rankings):
                ranks = [rank for rank, hit in enumerate(hits, start=1) if hit.chunk_id in gold[q["id"]]]
                recall5 += bool(ranks and ranks[0] <= 5)
                mrr += 1 / ranks[0] if ranks else 0.0
            results["modes"][mode] = {"recall@5": round(recall5 / len(asked), 4), "mrr@10": round(mrr / len(asked), 4),
                                      "seconds": round(time.perf_counter() - started, 2)}
        best_single = max(results["modes"]["dense"]["recall@5"], results["modes"]["lexical"]["recall@5"])
        results["hybrid_vs_best_single_recall@5"] = round(results["modes"]["hybrid"]["recall@5"] / best_single, 4)
        project.close()
    emit(results, args.out)


if __name__ == "__main__":
    main()
