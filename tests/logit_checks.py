"""Compare llama.cpp's logits with transformers' on the same tokens (used by the GGUF conversion tests)."""

from __future__ import annotations

import numpy as np


def llama_logits(llm, tokens: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position, decoding one token at a time on `llm`'s context (adapter included)."""
    import llama_cpp

    llm.reset()
    rows = []
    for token in tokens:
        llm.eval([token])
        rows.append(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy())
    return np.stack(rows)


def differences(logits: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(top-1 agreement, max |Δ log-softmax| on tokens with reference p >= 1e-3, max |Δ| over the vocabulary)."""
    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    a, b = log_softmax(logits.astype(np.float64)), log_softmax(reference.astype(np.float64))
    delta = np.abs(a - b)
    return float((a.argmax(-1) == b.argmax(-1)).mean()), float(delta[b >= np.log(1e-3)].max()), float(delta.max())
