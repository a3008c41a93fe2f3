"""Vector indexes over chunk embeddings. The store holds the embeddings; an index is derived from it and can be
rebuilt at any time, which is what lets a server vector database replace the in-process one later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ragtune.knowledge.store import KnowledgeStore


class VectorIndex(Protocol):
    """What retrieval needs from a vector index."""

    def sync(self, store: KnowledgeStore) -> None:
        """Bring the index in line with the store's current generation."""
        ...

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """For each query vector, the `k` best (chunk id, cosine similarity), optionally among `allowed` ids."""
        ...

    def __len__(self) -> int: ...

    def describe(self) -> dict:
        """Kind, number of vectors and bytes used, for `ragtune status`."""
        ...


class FlatVectorIndex:
    """Exact inner-product search over normalised embeddings in memory, saved as .npy files.

    Exact search over a float32 matrix takes a few milliseconds per query at 100,000 chunks on two cores
    (see BENCHMARKS.md), so an approximate index would only add recall loss at this scale.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.generation = -1

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict:
        return {"kind": "flat (exact inner product, numpy)", "vectors": len(self.ids),
                "bytes": int(self.matrix.nbytes + self.ids.nbytes)}

    def sync(self, store: KnowledgeStore) -> None:
        if self.generation == store.generation:
            return
        stamp = self.directory / "flat.json"
        if stamp.exists() and json.loads(stamp.read_text()).get("generation") == store.generation:
            self.ids = np.load(self.directory / "flat_ids.npy")
            self.matrix = np.load(self.directory / "flat_vectors.npy")
        else:
            self.ids, self.matrix = store.embeddings()
            np.save(self.directory / "flat_ids.npy", self.ids)
            np.save(self.directory / "flat_vectors.npy", self.matrix)
            stamp.write_text(json.dumps({"generation": store.generation, "size": len(self.ids)}))
        self.generation = store.generation

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        if len(self.ids) == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        ids, matrix = self.ids, self.matrix
        if allowed is not None:
            keep = np.isin(ids, allowed)
            ids, matrix = ids[keep], matrix[keep]
            if len(ids) == 0:
                return [[] for _ in range(len(queries))]
        scores = queries.astype(np.float32) @ matrix.T
        k = min(k, len(ids))
        results = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k]
            top = top[np.argsort(-row[top], kind="stable")]
            results.append([(int(ids[i]), float(row[i])) for i in top])
        return results


def open_vector_index(directory: Path) -> VectorIndex:
    """The vector index kept in `directory` (synced with the store on first use)."""
    return FlatVectorIndex(directory)
