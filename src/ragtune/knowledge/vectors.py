"""Vector indexes over chunk embeddings. The store holds the embeddings; an index kept beside it is derived from it,
follows its change log (only changed chunks are read), and can be rebuilt at any time. On PostgreSQL the index is
pgvector's, inside the database."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ragtune.knowledge.stamps import read_stamp, saved_ids, write_stamp
from ragtune.knowledge.store_base import StoreBase
from ragtune.knowledge.types import Selection, allowed_ids

Results = list[list[tuple[int, float]]]


class VectorIndex(Protocol):
    """What retrieval needs from a vector index."""

    def sync(self, store: StoreBase) -> None:
        """Bring the index in line with the store's current generation."""
        ...

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | Selection | None = None) -> Results:
        """For each query vector, the `k` best (chunk id, cosine similarity), optionally among `allowed` chunks
        (listed ids, or a filter's selection, which an index in the database executes itself)."""
        ...

    def __len__(self) -> int: ...

    def describe(self) -> dict:
        """Kind, number of vectors and bytes used, for `ragtune status`."""
        ...


def exact_search(ids: np.ndarray, matrix: np.ndarray, queries: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> Results:
    """Exact inner-product top `k` of `queries` against the rows of `matrix` (chunk `ids`), among `allowed` ids."""
    if allowed is not None:
        keep = np.isin(ids, allowed)
        ids, matrix = ids[keep], matrix[keep]
    if len(ids) == 0 or k <= 0:
        return [[] for _ in range(len(queries))]
    scores = np.asarray(queries, dtype=np.float32) @ matrix.T
    k = min(k, len(ids))
    results = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        results.append([(int(ids[i]), float(row[i])) for i in top])
    return results


def save_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Each array to its .npy file under a temporary name, then renamed: a reader finds the old file or the new."""
    for name, array in arrays.items():
        np.save(directory / f"{name}.tmp.npy", array)
        os.replace(directory / f"{name}.tmp.npy", directory / name)


@dataclass
class CaughtUp:
    """An index's chunks brought to a new generation by the store's change log: all of them (`ids`, `matrix`, in id
    order) and what changed (`gone` left, `added_ids` with `added_vectors` came)."""

    ids: np.ndarray
    matrix: np.ndarray
    gone: np.ndarray
    added_ids: np.ndarray
    added_vectors: np.ndarray


def apply_change_log(ids: np.ndarray, matrix: np.ndarray, store, since: int, generation: int) -> CaughtUp | None:
    """The chunks of an index at generation `since` brought to `generation` by the store's change log: the chunks
    changed meanwhile leave, the ones added come back with their stored embedding, and only those are read. None when
    reading everything is the way: the index has nothing to start from, the log does not reach back that far, or
    most of the index would be read anyway."""
    changes = store.chunk_changes(since, generation) if since >= 0 and len(ids) == len(matrix) else None
    if changes is None or len(changes[1]) > max(len(ids), 1_000) // 2:
        return None
    touched, added = changes
    leaving = np.isin(ids, touched)
    new_ids, new_vectors = store.embeddings_of(added)
    kept_ids = ids[~leaving]
    kept = np.asarray(matrix[~leaving]) if leaving.any() else np.asarray(matrix)
    if not len(new_ids):
        merged_ids, merged = kept_ids, kept
    elif not len(kept_ids):
        merged_ids, merged = new_ids, new_vectors
    else:
        merged_ids, merged = np.concatenate([kept_ids, new_ids]), np.concatenate([kept, new_vectors])
        if new_ids[0] < kept_ids[-1]:  # an id SQLite gave again: back into id order
            order = np.argsort(merged_ids, kind="stable")
            merged_ids, merged = merged_ids[order], merged[order]
    return CaughtUp(merged_ids, merged, ids[leaving], new_ids, new_vectors)


class FlatVectorIndex:
    """Exact inner-product search over normalised embeddings in memory, saved as .npy files.

    A query reads the whole float32 matrix: under 1 ms at 20,000 chunks but 8 ms at 100,000 on two cores
    (benchmarks/bench_vector_index.py), so `open_vector_index` uses it for small collections only.
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

    def sync(self, store: StoreBase) -> None:
        generation = store.generation  # read before the data (see LexicalIndex.sync)
        if self.generation == generation:
            return
        stamp = self.directory / "flat.json"
        saved = read_stamp(stamp, store.identity).get("generation")
        if self.generation < 0 and saved is not None:  # what the last process saved: current, or a start
            self.ids = np.load(self.directory / "flat_ids.npy")
            self.matrix = np.load(self.directory / "flat_vectors.npy")
            self.generation = saved
        if self.generation != generation:
            caught = apply_change_log(self.ids, self.matrix, store, self.generation, generation)
            self.ids, self.matrix = (caught.ids, caught.matrix) if caught else store.embeddings()
            stamp.unlink(missing_ok=True)  # another process never pairs these ids with other vectors
            save_arrays(self.directory, {"flat_ids.npy": self.ids, "flat_vectors.npy": self.matrix})
            write_stamp(stamp, store.identity, generation, size=len(self.ids))
        self.generation = generation

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | Selection | None = None) -> Results:
        return exact_search(self.ids, self.matrix, queries, k, allowed_ids(allowed))

    def saved(self, store) -> tuple[int | None, np.ndarray | None]:
        """(generation, chunk ids) as saved on disk from `store` (see stamps.saved_ids)."""
        return saved_ids(self.directory / "flat.json", self.directory / "flat_ids.npy", store.identity)


class HnswVectorIndex:
    """Approximate search on a usearch HNSW graph (f16 vectors, inner product), re-scored exactly.

    Beside the graph it keeps the float32 embeddings (a memory-mapped .npy): they give exact cosine scores to the
    graph's candidates, exact search under small filters, and the diff that lets `sync` update the graph in place
    (remove gone or changed chunks, add new ones) rather than rebuild it. The graph is rebuilt once the changes
    since its last build reach half its size, as removed nodes degrade it. The parameters give recall@10 >= 0.98
    against exact search at 100,000 chunks (benchmarks/bench_vector_index.py).
    """

    CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 32, 128, 256

    def __init__(self, directory: Path, exact_limit: int = 20_000):
        self.directory = directory
        self.exact_limit = exact_limit  # filters allowing at most this many chunks are searched exactly
        self.ids = np.zeros(0, dtype=np.int64)  # ascending, as store.embeddings() returns them
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.graph = None
        self.changes = 0  # vectors removed or added since the graph was built
        self.generation = -1

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict:
        graph_bytes = self.graph.memory_usage if self.graph is not None else 0
        return {"kind": "hnsw (usearch)", "vectors": len(self.ids),
                "bytes": int(graph_bytes + self.matrix.nbytes + self.ids.nbytes)}

    def sync(self, store: StoreBase) -> None:
        generation = store.generation  # read before the data (see LexicalIndex.sync)
        if self.generation == generation:
            return
        if self.generation < 0 and read_stamp(self.directory / "hnsw.json", store.identity):
            self._load(store.identity)
        if self.generation != generation:
            caught = apply_change_log(self.ids, self.matrix, store, self.generation, generation)
            if caught:
                self._apply(caught)
            else:
                self._update(*store.embeddings())
            self._save(store.identity, generation)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | Selection | None = None) -> Results:
        queries, allowed = np.asarray(queries, dtype=np.float32), allowed_ids(allowed)
        if self.graph is None or k <= 0 or (allowed is not None and len(allowed) <= self.exact_limit):
            return exact_search(self.ids, self.matrix, queries, k, allowed)
        # Under a filter, oversample so that about 2 * k candidates pass it; too few passing means exact search.
        count = k if allowed is None else int(np.ceil(2 * k * len(self.ids) / len(allowed)))
        matches = self.graph.search(queries, min(count, len(self.ids)))
        results = []
        for i, query in enumerate(queries):
            keys = (matches if len(queries) == 1 else matches[i]).keys.astype(np.int64)
            if allowed is not None:
                keys = keys[np.isin(keys, allowed)]
            if len(keys) < min(k, len(self.ids)):
                results += exact_search(self.ids, self.matrix, query[None], k, allowed)
            else:
                results += exact_search(keys, self.matrix[np.searchsorted(self.ids, keys)], query[None], k)
        return results

    def saved(self, store) -> tuple[int | None, np.ndarray | None]:
        """(generation, chunk ids) as saved on disk from `store` (see stamps.saved_ids)."""
        return saved_ids(self.directory / "hnsw.json", self.directory / "hnsw_ids.npy", store.identity)

    def _apply(self, caught: CaughtUp) -> None:
        """Take the change log's changes into the graph (no diff needed: the log says what changed)."""
        self.changes += len(caught.gone) + len(caught.added_ids)
        if len(caught.ids) == 0 or self.graph is None or self.changes * 2 >= len(caught.ids):
            self.graph, self.changes = None, 0
            self._update(caught.ids, caught.matrix)
            return
        if len(caught.gone):
            self.graph.remove(caught.gone)
        if len(caught.added_ids):
            self.graph.add(caught.added_ids, caught.added_vectors)
        self.ids, self.matrix = caught.ids, caught.matrix

    def _update(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        """Make the graph hold exactly (ids, matrix)."""
        if self.graph is not None and self.graph.ndim == matrix.shape[1]:
            common, old, new = np.intersect1d(self.ids, ids, assume_unique=True, return_indices=True)
            kept = common[np.all(self.matrix[old] == matrix[new], axis=1)]
        else:
            kept = np.zeros(0, dtype=np.int64)
        gone = np.setdiff1d(self.ids, kept, assume_unique=True)
        added = ~np.isin(ids, kept, assume_unique=True)
        self.changes += len(gone) + int(added.sum())
        if len(ids) == 0:
            self.graph, self.changes = None, 0
        elif self.graph is None or self.changes * 2 >= len(ids):
            self.graph, self.changes = self._new_graph(matrix.shape[1]), 0
            self.graph.add(ids, matrix)
        else:
            if len(gone):
                self.graph.remove(gone)
            if added.any():
                self.graph.add(ids[added], matrix[added])
        self.ids, self.matrix = ids, matrix

    def _new_graph(self, dimension: int):
        from usearch.index import Index

        return Index(ndim=dimension, metric="ip", dtype="f16", connectivity=self.CONNECTIVITY,
                     expansion_add=self.EXPANSION_ADD, expansion_search=self.EXPANSION_SEARCH)

    def _save(self, store_id: str, generation: int) -> None:
        """Write the graph and vectors under temporary names, then rename them; the stamp goes last."""
        stamp = self.directory / "hnsw.json"
        stamp.unlink(missing_ok=True)
        save_arrays(self.directory, {"hnsw_ids.npy": self.ids, "hnsw_vectors.npy": self.matrix})
        self.matrix = np.load(self.directory / "hnsw_vectors.npy", mmap_mode="r")  # as after a load
        if self.graph is not None:
            self.graph.save(self.directory / "hnsw.usearch.tmp")
            os.replace(self.directory / "hnsw.usearch.tmp", self.directory / "hnsw.usearch")
        write_stamp(stamp, store_id, generation, size=len(self.ids), changes=self.changes)
        self.generation = generation

    def _load(self, store_id: str) -> None:
        from usearch.index import Index

        saved = read_stamp(self.directory / "hnsw.json", store_id)
        self.ids = np.load(self.directory / "hnsw_ids.npy")
        self.matrix = np.load(self.directory / "hnsw_vectors.npy", mmap_mode="r")
        self.graph = Index.restore(self.directory / "hnsw.usearch") if saved["size"] else None
        if self.graph is not None:
            self.graph.expansion_search = self.EXPANSION_SEARCH
        self.changes, self.generation = saved["changes"], saved["generation"]


class AutoVectorIndex:
    """Flat (exact) search below `threshold` chunks, HNSW from there on, chosen again at every sync.

    Exact search over 20,000 chunks takes under 1 ms, about what HNSW takes at 100,000, and needs no graph build
    (4 s at 20,000 chunks on two cores); HNSW searches filters allowing at most `threshold` chunks exactly too.
    """

    def __init__(self, directory: Path, threshold: int = 20_000):
        self.directory = directory
        self.threshold = threshold
        self.active: FlatVectorIndex | HnswVectorIndex = FlatVectorIndex(directory)

    def __len__(self) -> int:
        return len(self.active)

    def describe(self) -> dict:
        return self.active.describe()

    def sync(self, store: StoreBase) -> None:
        if self.active.generation == store.generation:
            return
        large = store.counts()["chunks"] >= self.threshold
        if large != isinstance(self.active, HnswVectorIndex):
            self.active = HnswVectorIndex(self.directory, self.threshold) if large else FlatVectorIndex(self.directory)
        self.active.sync(store)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | Selection | None = None) -> Results:
        return self.active.search(queries, k, allowed)

    def saved(self, store) -> tuple[int | None, np.ndarray | None]:
        """(generation, chunk ids) saved on disk from `store` by the index it is searched with at its size."""
        large = store.counts()["chunks"] >= self.threshold
        return (HnswVectorIndex(self.directory) if large else FlatVectorIndex(self.directory)).saved(store)


class PgVectorIndex:
    """Search in the store's own pgvector HNSW index (PostgreSQL): always current, shared by every replica, nothing
    kept on this machine."""

    def __init__(self, store):
        self.store = store

    def __len__(self) -> int:
        return self.store.counts()["chunks"]

    def describe(self) -> dict:
        return {"kind": "hnsw (pgvector, in PostgreSQL)", "vectors": len(self)}

    def sync(self, store) -> None:
        """Nothing to do: the database maintains its index with every write."""

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | Selection | None = None) -> Results:
        """Searched in the database, with a selection's filter in the same query (its ids are never listed)."""
        where = allowed.where if isinstance(allowed, Selection) else None
        ids = None if isinstance(allowed, Selection) else allowed
        if k <= 0 or (ids is not None and len(ids) == 0):
            return [[] for _ in range(len(queries))]
        return [self.store.nearest(query, k, ids, where) for query in np.asarray(queries, dtype=np.float32)]

    def saved(self, store) -> tuple[int | None, np.ndarray | None]:
        """(generation, chunk ids): the database's index always holds the store's chunks."""
        return self.store.generation, self.store.chunk_ids()


def open_vector_index(directory: Path, store=None) -> VectorIndex:
    """The vector index for `store`: the database's own for a PostgreSQL store, else the one kept in `directory`
    (synced with the store on first use)."""
    if getattr(store, "backend", "sqlite") == "postgresql":
        return PgVectorIndex(store)
    return AutoVectorIndex(directory)
