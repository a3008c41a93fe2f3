"""Sentence embeddings for chunks and queries, and the embedder's tokenizer for token-aware chunking.

An embedder runs through one of two runtimes: "openvino" (the model exported once, checked against the original;
see `openvino_embedder`) or "torch" (sentence-transformers as packaged). "auto" takes OpenVINO where it can be
built here, passes the check and is faster, and torch otherwise. The knowledge base records the runtime its
vectors came from, so that queries are always embedded the same way (see `KnowledgeBase.embedder`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from tokenizers import Tokenizer

from ragtune.errors import RagtuneError
from ragtune.knowledge.openvino_embedder import ExportUnavailable, OpenVINOEncoder, export, verify
from ragtune.models.loading import load_embedder, open_sentence_transformer
from ragtune.models.registry import resolve_embedder

Runtime = Literal["auto", "openvino", "torch"]
log = logging.getLogger(__name__)


class TorchEncoder:
    """sentence-transformers on torch, float32: the packaged model as it is."""

    runtime = "torch"
    precision = "f32"

    def __init__(self, model):
        self.model = model
        self.tokenizer = model.tokenizer
        self.max_seq_length = int(model.max_seq_length)
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """One batch of texts -> (n, dim) float32 unit vectors."""
        return self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)


class Embedder:
    """One embedding model for both passages and queries (normalised, so dot = cosine), through one runtime."""

    def __init__(self, name: str, batch_size: int = 64, runtime: Runtime = "auto"):
        self.name = name
        self.batch_size = batch_size
        self.fallback_reason: str | None = None
        self._lock = threading.Lock()
        self.encoder = self._open(runtime)
        self.tokenizer = Tokenizer.from_str(self.encoder.tokenizer.backend_tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    @property
    def runtime(self) -> str:
        """The runtime the vectors come from: "openvino" or "torch"."""
        return self.encoder.runtime

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def max_tokens(self) -> int:
        """Longest input the model embeds without truncation, special tokens excluded."""
        return self.encoder.max_seq_length - 2

    def describe(self) -> dict:
        """The runtime in use, its precision, and its check against the original or why it was not taken."""
        verification = getattr(self.encoder, "verification", None)
        return {"runtime": self.runtime, "precision": self.encoder.precision,
                "verification": verification.describe() if verification else None,
                "fallback_reason": self.fallback_reason}

    def encode(self, texts: list[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed texts in batches; `on_batch(n)` is called after each batch of n texts (for progress)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = order[start:start + self.batch_size]
            with self._lock:  # one inference at a time: an OpenVINO infer request is not for concurrent use
                vectors[batch] = self.encoder.encode([texts[i] for i in batch])
            if on_batch:
                on_batch(len(batch))
        return vectors

    def _open(self, runtime: Runtime):
        if runtime == "torch":
            return TorchEncoder(load_embedder(self.name))
        try:
            encoder = self._open_openvino()
        except ExportUnavailable as unusable:
            reason = str(unusable)
        else:
            if encoder.verification.accurate and (runtime == "openvino" or encoder.verification.speedup > 1):
                return encoder
            reason = f"the OpenVINO export failed its check: {encoder.verification.describe()}"
        if runtime == "openvino":
            raise RagtuneError(f"embedder '{self.name}' cannot run through OpenVINO here: {reason}",
                               "set models.embedder_runtime: torch in ragtune.yaml (or auto, which falls back)")
        self.fallback_reason = reason
        log.log(logging.WARNING if "check" in reason else logging.INFO, "embedder %s runs on torch: %s", self.name,
                reason)
        return TorchEncoder(load_embedder(self.name))

    def _open_openvino(self):
        model_dir = Path(resolve_embedder(self.name).location)
        try:
            export_dir = export(model_dir)
            encoder = OpenVINOEncoder(model_dir, export_dir)
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            raise ExportUnavailable(f"the OpenVINO export or load failed ({type(exc).__name__}: {exc})") from exc

        def original() -> Callable[[list[str]], np.ndarray]:
            return TorchEncoder(open_sentence_transformer(self.name)).encode  # released after the check

        encoder.verification = verify(encoder, original, export_dir)
        return encoder

