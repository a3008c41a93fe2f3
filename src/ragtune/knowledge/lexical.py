"""The lexical index: BM25 (bm25s, Lucene variant) over chunk texts with English stemming and stopwords.

Like the vector index it is derived from the store and follows the store's generation (see LexicalIndex). bm25s was
chosen over SQLite FTS5 by measurement: at 100,000 chunks FTS5's ranked OR-queries took 20 ms (p50), bm25s's
precomputed sparse scores about 4 ms (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from scipy import sparse

from ragtune.knowledge.stamps import read_stamp, saved_ids, write_stamp
from ragtune.knowledge.store_base import StoreBase
from ragtune.knowledge.types import Selection, allowed_ids

# bm25s sets its logger to DEBUG, which prints "Building index from tokens" wherever logging has a handler
logging.getLogger("bm25s").setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(texts: list[str], *, as_ids: bool = False):
    """Lower-cased, stopword-free, stemmed terms of each text: as strings, or with `as_ids` as bm25s's Tokenized
    (term ids and their vocabulary)."""
    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), return_ids=as_ids, show_progress=False)


class FastBuildBM25(bm25s.BM25):
    """bm25s's BM25 (its default Lucene variant, ragtune's setting) with the index built by scipy's sparse operations
    instead of bm25s's Python loop over documents; bm25s names `build_index_from_ids` as the method to override.
    The same scores (tested against bm25s's own build), 5x faster at 1,000,000 chunks (BENCHMARKS.md), where the
    build is what every write costs each replica."""

    def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
        if self.method != "lucene" or self.idf_method not in (None, "lucene"):
            return super().build_index_from_ids(unique_token_ids, corpus_token_ids, show_progress, leave_progress)
        self.nonoccurrence_array = None  # used by the BM25L and BM25+ variants only
        documents, vocabulary = len(corpus_token_ids), len(unique_token_ids)
        lengths = np.fromiter(map(len, corpus_token_ids), dtype=np.int64, count=documents)
        terms = np.concatenate([np.asarray(t, dtype=np.int32) for t in corpus_token_ids])
        counts = sparse.csr_matrix((np.ones(len(terms), dtype=np.float32), terms,
                                    np.concatenate([[0], np.cumsum(lengths)])), shape=(documents, vocabulary))
        counts.sum_duplicates()  # each document's term frequencies
        frequency = np.bincount(counts.indices, minlength=vocabulary)
        idf = np.log(1 + (documents - frequency + 0.5) / (frequency + 0.5)).astype(self.dtype)
        tf = counts.data
        length_norm = (1 - self.b) + self.b * np.repeat(lengths, np.diff(counts.indptr)) / lengths.mean()
        counts.data = (idf[counts.indices] * (tf / (self.k1 * length_norm + tf))).astype(self.dtype)
        scores = counts.tocsc()
        return {"data": scores.data, "indices": scores.indices, "indptr": scores.indptr, "num_docs": documents}


class LexicalIndex:
    """BM25 search over the store's chunks, persisted under `directory`.

    Beside the BM25 model it keeps every chunk's stemmed terms (as ids into one growing vocabulary): after a write
    it reads and tokenizes only the chunks the store's change log names, then builds the scores again from the kept
    terms (bm25s cannot update them in place, and every document changes the others' IDF and average length)."""

    def __init__(self, directory: Path):
        self.directory = directory / "bm25"
        self.ids = np.zeros(0, dtype=np.int64)
        self.terms: list[np.ndarray] = []  # each chunk's term ids, in `ids` order
        self.vocabulary: dict[str, int] = {}
        self.model: bm25s.BM25 | None = None
        self.generation = -1

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict:
        vocabulary = len(self.model.vocab_dict) if self.model is not None else 0
        return {"kind": "BM25 (bm25s, Lucene)", "chunks": len(self.ids), "terms": vocabulary}

    def sync(self, store: StoreBase) -> None:
        """Load the saved index, bring it to the store's generation (from the change log when it reaches back, else
        from every chunk) and save it. The generation is read once, before the texts: a write committed meanwhile
        (another ingest, another machine) leaves the index one generation behind, to be caught up at the next
        search, never labelled newer than what it holds."""
        generation = store.generation
        if self.generation == generation:
            return
        stamp = self.directory / "stamp.json"
        saved = read_stamp(stamp, store.identity).get("generation")
        if self.generation < 0 and saved is not None and (self.directory / "terms.npz").exists():
            self._load(current=saved == generation)
            self.generation = saved
        if self.generation != generation:
            changes = store.chunk_changes(self.generation, generation) if self.generation >= 0 else None
            if changes is None:
                self._read_all(store)
            else:
                self._apply(store, *changes)
            stamp.unlink(missing_ok=True)
            self._index_and_save()
            write_stamp(stamp, store.identity, generation, chunks=len(self.ids))
        self.generation = generation

    def saved(self, store) -> tuple[int | None, np.ndarray | None]:
        """(generation, chunk ids) as saved on disk from `store` (see stamps.saved_ids)."""
        return saved_ids(self.directory / "stamp.json", self.directory / "ids.npy", store.identity)

    def _read_all(self, store: StoreBase) -> None:
        ids, texts = store.chunk_texts()
        tokenized = tokenize(texts, as_ids=True)
        self.ids, self.vocabulary = ids, dict(tokenized.vocab)
        self.terms = [np.asarray(terms, dtype=np.int32) for terms in tokenized.ids]

    def _apply(self, store: StoreBase, touched: np.ndarray, added: np.ndarray) -> None:
        """Drop the touched chunks' terms, tokenize the added ones (new terms join the vocabulary)."""
        kept = np.flatnonzero(~np.isin(self.ids, touched))
        new_ids, texts = store.chunk_texts_of(added)
        new_terms = [np.fromiter((self.vocabulary.setdefault(term, len(self.vocabulary)) for term in terms),
                                 dtype=np.int32) for terms in tokenize(texts)]
        ids = np.concatenate([self.ids[kept], new_ids])
        terms = [self.terms[i] for i in kept] + new_terms
        order = np.argsort(ids, kind="stable")
        self.ids, self.terms = ids[order], [terms[i] for i in order]

    def _index_and_save(self) -> None:
        """Build the BM25 scores from the kept terms; save them with the terms, the stamp going last."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model = None
        if len(self.ids):
            self.model = FastBuildBM25()
            self.model.index(bm25s.tokenization.Tokenized(ids=self.terms, vocab=dict(self.vocabulary)),
                             show_progress=False)
            self.model.save(self.directory)
        lengths = np.array([len(terms) for terms in self.terms], dtype=np.int64)
        np.savez(self.directory / "terms.npz", offsets=np.concatenate([[0], np.cumsum(lengths)]),
                 terms=np.concatenate(self.terms) if self.terms else np.zeros(0, dtype=np.int32))
        (self.directory / "vocabulary.json").write_text(json.dumps(list(self.vocabulary)))
        np.save(self.directory / "ids.npy", self.ids)

    def _load(self, *, current: bool) -> None:
        """The saved terms (and, when `current`, the saved model)."""
        self.ids = np.load(self.directory / "ids.npy")
        saved = np.load(self.directory / "terms.npz")
        offsets, flat = saved["offsets"], saved["terms"]
        self.terms = [flat[offsets[i]:offsets[i + 1]] for i in range(len(self.ids))]
        self.vocabulary = {term: i for i, term in enumerate(json.loads((self.directory / "vocabulary.json")
                                                                        .read_text()))}
        self.model = bm25s.BM25.load(self.directory) if current and len(self.ids) else None

    def search(self, query: str, k: int, allowed: np.ndarray | Selection | None = None) -> list[tuple[int, float]]:
        """The `k` best (chunk id, BM25 score) with a positive score, optionally among `allowed` chunks."""
        if self.model is None or k <= 0:
            return []
        terms = [t for t in tokenize([query])[0] if t in self.model.vocab_dict]
        if not terms:
            return []
        allowed = allowed_ids(allowed)
        mask = None if allowed is None else np.isin(self.ids, allowed).astype(np.float32)
        positions, scores = self.model.retrieve([terms], k=min(k, len(self.ids)), show_progress=False,
                                                n_threads=1, weight_mask=mask)
        return [(int(self.ids[p]), float(s)) for p, s in zip(positions[0], scores[0]) if s > 0]
