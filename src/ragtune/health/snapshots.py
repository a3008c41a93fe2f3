"""Snapshots of the knowledge base, taken after every ingest that changed it: counts, token-length quantiles, the
languages and a random sample of chunk embeddings, lengths and excerpts. `ragtune health` tests the latest against a
baseline for drift (ragtune.health.corpus_drift)."""

from __future__ import annotations

import numpy as np

from ragtune.health.languages import language_counts
from ragtune.knowledge.store import KnowledgeStore

SAMPLE_CHUNKS = 500  # enough for the MMD test to see a 10% topic shift (tests/health/test_drift.py)
EXCERPT_CHARS = 160


def take_snapshot(store: KnowledgeStore, *, sample_size: int = SAMPLE_CHUNKS, seed: int | None = None) -> bool:
    """Record a snapshot unless the latest one already shows this generation of the store; True if one was taken."""
    if store.latest_snapshot_generation() == store.generation:
        return False
    ids = store.chunk_ids()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(ids, size=min(sample_size, len(ids)), replace=False) if len(ids) else ids
    sample = store.chunk_sample(chosen.tolist())
    lengths = [row[2] for row in sample]
    counts = store.counts()
    summary = {
        "embedder": store.get_meta("embedder"),
        "sources": counts["sources"], "documents": counts["documents"], "chunks": counts["chunks"],
        "token_quantiles": _token_quantiles(store),
        "languages": language_counts(row[3] for row in sample),
        "sample_lengths": lengths,
        "sample_excerpts": [row[3][:EXCERPT_CHARS] for row in sample],
    }
    embeddings = np.stack([row[4] for row in sample]) if sample else np.zeros((0, 0), dtype=np.float32)
    store.add_snapshot(summary, embeddings)
    return True


def _token_quantiles(store: KnowledgeStore) -> dict[str, float]:
    lengths = store.token_counts()
    if not len(lengths):
        return {}
    return {f"p{q}": float(np.percentile(lengths, q)) for q in (5, 25, 50, 75, 95)}
