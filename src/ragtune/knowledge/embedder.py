"""Sentence embeddings for chunks and queries, and the embedder's tokenizer for token-aware chunking."""

from __future__ import annotations

from typing import Callable

import numpy as np
from tokenizers import Tokenizer

from ragtune.models.loading import load_embedder


class Embedder:
    """A sentence-transformers model used for both passages and queries (normalised, so dot = cosine)."""

    def __init__(self, name: str, batch_size: int = 64):
        self.name = name
        self.batch_size = batch_size
        self.model = load_embedder(name)
        self.tokenizer = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        """Longest input the model embeds without truncation, special tokens excluded."""
        return int(self.model.max_seq_length) - 2

    def encode(self, texts: list[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed texts in batches; `on_batch(n)` is called after each batch of n texts (for progress)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = order[start:start + self.batch_size]
            vectors[batch] = self.model.encode([texts[i] for i in batch], batch_size=self.batch_size,
                                               normalize_embeddings=True, convert_to_numpy=True)
            if on_batch:
                on_batch(len(batch))
        return vectors
