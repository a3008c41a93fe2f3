"""Vector indexes: HNSW against exact search, filters, persistence and incremental sync, automatic backend choice."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.knowledge.store import KnowledgeStore, PreparedDocument
from ragtune.knowledge.types import Chunk, ChunkFilter, RawDocument
from ragtune.knowledge.vectors import AutoVectorIndex, FlatVectorIndex, HnswVectorIndex, exact_search


def clustered(n: int, dimension: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 50, 1), dimension))
    x = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.standard_normal((n, dimension))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class FakeStore:
    """The part of KnowledgeStore an index reads, counting full reads of the embeddings."""

    identity = "fake-store"

    def __init__(self, ids: np.ndarray, matrix: np.ndarray):
        self.generation, self.reads = 1, 0
        self.set(ids, matrix)

    def set(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        order = np.argsort(ids)
        self.ids, self.matrix = np.asarray(ids, dtype=np.int64)[order], matrix[order]
        self.generation += 1

    def embeddings(self):
        self.reads += 1
        return self.ids, self.matrix

    def counts(self) -> dict:
        return {"chunks": len(self.ids)}

    def chunk_changes(self, since: int, until: int) -> None:
        return None  # no change log: an index reads every embedding


def ids_of(results):
    return [[chunk_id for chunk_id, _ in row] for row in results]


@pytest.fixture(scope="module")
def data():
    vectors = clustered(4200)
    return np.arange(1, 4001) * 3, vectors[:4000], vectors[4000:]


def test_hnsw_recall_and_exact_scores(tmp_path, data):
    ids, matrix, queries = data
    hnsw = HnswVectorIndex(tmp_path)
    hnsw.sync(FakeStore(ids, matrix))
    approximate, exact = hnsw.search(queries, 10), exact_search(ids, matrix, queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ids_of(approximate), ids_of(exact))])
    assert recall >= 0.95
    scores = {(q, c): s for q, row in enumerate(exact) for c, s in row}
    for q, row in enumerate(approximate):
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
        assert all(abs(s - scores[q, c]) < 1e-5 for c, s in row if (q, c) in scores)
    assert len(hnsw) == 4000 and hnsw.describe()["kind"] == "hnsw (usearch)" and hnsw.describe()["bytes"] > 0


def test_filters_return_only_allowed_ids(tmp_path, data):
    ids, matrix, queries = data
    hnsw = HnswVectorIndex(tmp_path, exact_limit=300)
    hnsw.sync(FakeStore(ids, matrix))
    small, large = ids[::20], ids[ids % 2 == 0]
    assert hnsw.search(queries, 10, small) == exact_search(ids, matrix, queries, 10, small)
    for row in hnsw.search(queries, 10, large):
        assert len(row) == 10 and all(chunk_id % 2 == 0 for chunk_id, _ in row)
    # Allowed ids far from the query: the oversampled graph results miss them, so exact search takes over.
    far = ids[np.argsort(matrix @ queries[0])[:1000]]
    assert hnsw.search(queries[:1], 10, far) == exact_search(ids, matrix, queries[:1], 10, far)
    assert hnsw.search(queries[:1], 10, np.zeros(0, dtype=np.int64)) == [[]]


def test_sync_loads_when_current_and_updates_when_changed(tmp_path, data):
    ids, matrix, queries = data
    store = FakeStore(ids, matrix)
    HnswVectorIndex(tmp_path).sync(store)
    reloaded = HnswVectorIndex(tmp_path)
    reloaded.sync(store)
    assert store.reads == 1
    graph = reloaded.graph
    # Delete 100 chunks, give one surviving id a new vector (SQLite can reuse ids), add 50 chunks.
    new_ids = np.concatenate([ids[100:], [1_000_000 + i for i in range(50)]])
    new_matrix = np.concatenate([matrix[100:], clustered(50, seed=1)])
    new_matrix[0] = -matrix[100]
    store.set(new_ids, new_matrix)
    reloaded.sync(store)
    assert store.reads == 2 and reloaded.graph is graph  # updated in place
    found = set(np.concatenate(ids_of(reloaded.search(np.concatenate([matrix[:100], new_matrix[:1]]), 10))))
    assert found.isdisjoint(ids[:100])
    assert reloaded.search(new_matrix[:1], 1)[0][0] == (ids[100], pytest.approx(1.0, abs=1e-5))
    assert reloaded.search(new_matrix[-1:], 1)[0][0][0] == 1_000_049
    # A change touching most vectors rebuilds the graph; a fresh index then loads the saved state.
    store.set(ids[:1000], matrix[:1000])
    reloaded.sync(store)
    assert reloaded.graph is not graph and len(reloaded) == 1000
    again = HnswVectorIndex(tmp_path)
    again.sync(store)
    assert store.reads == 3 and again.search(queries, 5) == reloaded.search(queries, 5)


def test_auto_picks_backend_by_size(tmp_path, data):
    ids, matrix, queries = data
    store = FakeStore(ids[:400], matrix[:400])
    index = AutoVectorIndex(tmp_path, threshold=500)
    index.sync(store)
    assert isinstance(index.active, FlatVectorIndex) and len(index) == 400
    store.set(ids[:600], matrix[:600])
    index.sync(store)
    assert isinstance(index.active, HnswVectorIndex) and index.describe()["vectors"] == 600
    hits = index.search(queries[:1], 3)[0]
    assert hits[0][1] == pytest.approx(float(np.max(matrix[:600] @ queries[0])), abs=1e-5)
    store.set(ids[:300], matrix[:300])
    index.sync(store)
    assert isinstance(index.active, FlatVectorIndex) and len(index) == 300


def test_real_store_deletions_and_empty(tmp_path):
    store = KnowledgeStore(tmp_path / "kb.sqlite")
    vectors = clustered(300, seed=2)

    def source(name: str, rows: np.ndarray):
        chunks = [Chunk(f"{name} {i}", i, 0, 1, 1) for i in range(len(rows))]
        document = PreparedDocument(RawDocument(source=name, text=name), name, name, b"", chunks, rows)
        return {"key": name, "root": "r", "kind": "file", "fingerprint": "-", "size_bytes": 0, "status": "indexed",
                "note": None}, [document]

    store.replace_sources([source("a", vectors[:150]), source("b", vectors[150:])])
    index = AutoVectorIndex(tmp_path, threshold=100)
    index.sync(store)
    assert isinstance(index.active, HnswVectorIndex) and len(index) == 300
    b_ids = set(store.chunk_ids_matching(ChunkFilter(source_glob="b")).tolist())
    assert b_ids & set(ids_of(index.search(vectors[150:], 5))[0])
    store.delete_sources([("r", "b")])
    index.sync(store)
    assert not b_ids & set(np.concatenate(ids_of(index.search(vectors[150:], 5))))
    store.delete_sources([("r", "a")])
    index.sync(store)
    assert len(index) == 0 and index.search(vectors[:2], 5) == [[], []]
    store.close()


def test_an_index_saved_from_another_store_is_not_taken_for_current(tmp_path):
    """After a migration the new store may reach the old one's generation: its id tells their indexes apart."""
    ids, matrix = np.arange(50), clustered(50, seed=4)
    old = FakeStore(ids, matrix)
    FlatVectorIndex(tmp_path).sync(old)
    new = FakeStore(ids[:10], matrix[:10])
    new.identity, new.generation = "another-store", old.generation
    index = FlatVectorIndex(tmp_path)
    index.sync(new)
    assert len(index) == 10 and new.reads == 1
