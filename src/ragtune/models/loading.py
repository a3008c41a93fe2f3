"""Load named models once per process: generators (an engine by kind) and embedders."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationEngine
from ragtune.models.registry import resolve_embedder, resolve_generator

os.environ["HF_HUB_OFFLINE"] = "1"  # weights come from local files only, never from a hub


def open_generator(name: str, *, context_tokens: int = 2048, lora_path: str | None = None) -> GenerationEngine:
    """A new engine for generator `name` (see registry); `lora_path` applies a LoRA adapter GGUF (only GGUF
    models take one). The server keeps these in its own bounded cache; everything else uses `load_generator`."""
    spec = resolve_generator(name)
    if lora_path and spec.kind != "gguf":
        raise RagtuneError(f"a LoRA adapter needs a GGUF base model; '{name}' is {spec.kind}",
                           "use a GGUF generator, or merge the adapter into a Hugging Face model folder")
    if spec.kind == "gguf":
        from ragtune.models.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(spec.location, name=spec.name, context_tokens=context_tokens, lora_path=lora_path)
    if spec.kind == "hf":
        from ragtune.models.transformers_engine import TransformersEngine

        return TransformersEngine(spec.location, name=spec.name, context_tokens=context_tokens)
    if spec.kind == "run":
        return _run_engine(Path(spec.location), spec.name, context_tokens)
    from ragtune.models.openai_engine import OpenAIEngine

    return OpenAIEngine(spec.remote_model, spec.location, name=spec.name)


@lru_cache(maxsize=None)
def load_generator(name: str, *, context_tokens: int = 2048, lora_path: str | None = None) -> GenerationEngine:
    """The engine for generator `name`, loaded once per (name, context, adapter) in this process."""
    return open_generator(name, context_tokens=context_tokens, lora_path=lora_path)


def _run_engine(run_dir: Path, name: str, context_tokens: int) -> GenerationEngine:
    """A fine-tuned run served by llama.cpp from its GGUF files when it has them (base + LoRA adapter, or the
    merged model), else by transformers with the adapter or full model (prefix/prompt tuning, HF bases)."""
    from ragtune.training import runs

    metadata = runs.read_metadata(run_dir)
    gguf_file = metadata.get("llamacpp_file")
    if gguf_file:
        from ragtune.models.llamacpp_engine import LlamaCppEngine

        if gguf_file == runs.ADAPTER_GGUF:
            return LlamaCppEngine(metadata["base_gguf"], name=name, context_tokens=context_tokens,
                                  lora_path=str(run_dir / runs.ADAPTER_GGUF))
        return LlamaCppEngine(run_dir / gguf_file, name=name, context_tokens=context_tokens)
    from ragtune.models.transformers_engine import TransformersEngine

    if (run_dir / runs.MODEL_DIR).is_dir():
        return TransformersEngine(run_dir / runs.MODEL_DIR, name=name, context_tokens=context_tokens)
    return TransformersEngine(metadata["base_checkpoint"], name=name, context_tokens=context_tokens,
                              adapter_dir=run_dir / runs.ADAPTER_DIR)


def open_sentence_transformer(name: str):
    """A new sentence_transformers.SentenceTransformer on CPU for embedder `name` (see `load_embedder`)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    spec = resolve_embedder(name)
    hf_logging.disable_progress_bar()
    return SentenceTransformer(spec.location, device="cpu", local_files_only=True)


@lru_cache(maxsize=None)
def load_embedder(name: str):
    """The SentenceTransformer for embedder `name`, loaded once per process."""
    return open_sentence_transformer(name)
