"""Dense, lexical and hybrid (reciprocal rank fusion) retrieval with filters (source glob, metadata) and a reranking
hook."""

from __future__ import annotations

import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

from ragtune.config import RetrievalConfig
from ragtune.knowledge.embedder import Embedder
from ragtune.knowledge.lexical import LexicalIndex
from ragtune.knowledge.store_base import StoreBase
from ragtune.knowledge.types import ChunkFilter, Hit, Selection
from ragtune.knowledge.vectors import VectorIndex

Mode = Literal["dense", "lexical", "hybrid"]


class Reranker(Protocol):
    """Reorders (and may rescore) the fused candidates for a query."""

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


@dataclass
class RetrievalTimings:
    embed_seconds: float = 0.0
    search_seconds: float = 0.0
    per_query_search_seconds: list[float] = field(default_factory=list)


def normalize_query(query: str) -> str:
    """Unicode NFKC and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFKC", query).split())


def reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], k: int, rrf_k: int = 60,
                           weights: list[float] | None = None) -> list[tuple[int, float]]:
    """Fuse ranked (id, score) lists: score(id) = sum over lists of weight / (rrf_k + rank), rank from 1."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


class Retriever:
    """Finds the chunks most relevant to queries."""

    def __init__(self, store: StoreBase, index: VectorIndex, lexical: LexicalIndex, embedder: Embedder,
                 config: RetrievalConfig, reranker: Reranker | None = None,
                 rewrite_query: Callable[[str], str] | None = None):
        self.store, self.index, self.lexical, self.embedder, self.config = store, index, lexical, embedder, config
        self.reranker = reranker
        self.rewrite_query = rewrite_query
        # Held while searching; whoever changes the store under a serving retriever (ingest, delete) holds it too.
        self.lock = threading.RLock()

    def search(self, query: str, k: int | None = None, mode: Mode | None = None,
               where: ChunkFilter | str | None = None) -> list[Hit]:
        """The top `k` hits for one query, among the chunks `where` allows (a filter, or a source glob)."""
        return self.search_many([query], k, mode, where)[0]

    def search_many(self, queries: list[str], k: int | None = None, mode: Mode | None = None,
                    where: ChunkFilter | str | None = None) -> list[list[Hit]]:
        """The top `k` hits for each query; dense queries are embedded in batches."""
        return self.search_timed(queries, k, mode, where)[0]

    def search_timed(self, queries: list[str], k: int | None = None, mode: Mode | None = None,
                     where: ChunkFilter | str | None = None) -> tuple[list[list[Hit]], RetrievalTimings]:
        """`search_many` with the time it took (returned, never kept: one retriever serves concurrent requests)."""
        where = ChunkFilter(source_glob=where) if isinstance(where, str) else where
        k = self.config.k if k is None else k
        mode = mode or self.config.mode
        timings = RetrievalTimings()
        if k <= 0 or not queries:
            return [[] for _ in queries], timings
        with self.lock:  # the indexes catch up with the store here, and the store's connection is shared
            return self._search(queries, k, mode, where, timings), timings

    def _search(self, queries: list[str], k: int, mode: Mode, where: ChunkFilter | None,
                timings: RetrievalTimings) -> list[list[Hit]]:
        queries = [self._process(q) for q in queries]
        candidates = max(k, self.config.candidates) if mode == "hybrid" or self.reranker else k
        allowed = Selection(where, self.store) if where else None
        if mode in ("dense", "hybrid"):
            started = time.perf_counter()
            vectors = self.embedder.encode(queries)
            timings.embed_seconds = time.perf_counter() - started
            self.index.sync(self.store)
        if mode in ("lexical", "hybrid"):
            self.lexical.sync(self.store)
        results = []
        for position, query in enumerate(queries):
            started = time.perf_counter()
            dense = self.index.search(vectors[position:position + 1], candidates, allowed)[0] \
                if mode != "lexical" else []
            lexical = self.lexical.search(query, candidates, allowed) if mode != "dense" else []
            if mode == "hybrid":
                ranked = reciprocal_rank_fusion([dense, lexical], candidates, self.config.rrf_k,
                                                [self.config.dense_weight, self.config.lexical_weight])
            else:
                ranked = dense if mode == "dense" else lexical
            if self.reranker:
                hits = self.reranker.rerank(query, self.store.hits(ranked))
            else:
                hits = self.store.hits(ranked[:k])
            elapsed = time.perf_counter() - started
            timings.per_query_search_seconds.append(elapsed)
            timings.search_seconds += elapsed
            results.append(hits[:k])
        return results

    def _process(self, query: str) -> str:
        query = normalize_query(query)
        return self.rewrite_query(query) if self.rewrite_query else query
