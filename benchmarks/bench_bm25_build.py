"""Building the BM25 scores at 100,000 or 1,000,000 chunks: ragtune's sparse build (FastBuildBM25) against bm25s's
own build (the baseline), on the same term ids.

    python benchmarks/bench_bm25_build.py [--chunks 1000000] [--out results.json]

The chunks are COVID-QA's articles cut into 200-word windows, repeated until there are `--chunks` of them (BM25's
build cost depends on the number of chunks and terms, not on whether they repeat). Every write to the knowledge
base costs each serving replica one such build (lexical.py), so this is what a replica pays per ingest at that size.
Both builds must give the same scores: the script reports their largest difference over 50 questions.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import bm25s
import numpy as np
from covidqa import materialise

from ragtune.knowledge.lexical import FastBuildBM25, tokenize
from reporting import emit, timed


def windows(docs: Path, words: int = 200) -> list[str]:
    texts = []
    for path in sorted(docs.glob("*.txt")):
        tokens = path.read_text(encoding="utf-8").split()
        texts.extend(" ".join(tokens[start:start + words]) for start in range(0, len(tokens), words))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs, questions = materialise(Path(tmp))
        texts = windows(docs)
    tokenized = tokenize(texts, as_ids=True)
    base = [np.asarray(ids, dtype=np.int32) for ids in tokenized.ids]
    terms = [base[i % len(base)] for i in range(args.chunks)]
    corpus = bm25s.tokenization.Tokenized(ids=terms, vocab=dict(tokenized.vocab))
    baseline_corpus = bm25s.tokenization.Tokenized(ids=[t.tolist() for t in terms], vocab=dict(tokenized.vocab))
    fast, reference = FastBuildBM25(), bm25s.BM25()
    _, fast_seconds = timed(fast.index, corpus, show_progress=False)
    _, reference_seconds = timed(reference.index, baseline_corpus, show_progress=False)
    queries = [[t for t in q if t in reference.vocab_dict] for q in tokenize([q["question"] for q in questions[:50]])]
    worst = max(float(np.max(np.abs(fast.get_scores(q) - reference.get_scores(q)))) for q in queries if q)
    emit({"chunks": args.chunks, "terms": int(sum(len(t) for t in terms)),
          "bm25s_build_seconds": round(reference_seconds, 2), "sparse_build_seconds": round(fast_seconds, 2),
          "speedup": round(reference_seconds / fast_seconds, 1), "largest_score_difference": worst}, args.out)


if __name__ == "__main__":
    main()
