"""Every method end to end on a tiny Llama: the trainable parameter count is what the method promises, and
training lowers the loss."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from ragtune.data import parse_dataset_spec
from ragtune.errors import RagtuneError
from ragtune.training.finetune import finetune
from ragtune.training.methods import check_method_available
from ragtune.training.recipe import resolve_recipe

RANK, VIRTUAL_TOKENS, TRAINABLE_BLOCKS = 4, 32, 1
# Rates for a randomly initialised 2-block model, higher than the defaults tuned for real pre-trained models.
TINY_MODEL_RATES = {"full": 3e-3, "freeze": 3e-3, "lora": 1e-2, "dora": 1e-2, "ia3": 5e-2, "prefix": 2e-1,
                    "prompt": 3e-1}


def expected_trainable(method: str, config) -> int:
    """Trainable parameters each method promises, computed from the architecture alone."""
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (hidden, hidden),
              "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}  # (in, out)
    block = 4 * hidden * hidden - 2 * hidden * (hidden - kv) + 3 * hidden * inter + 2 * hidden  # + two norms
    embeddings = config.vocab_size * hidden * (1 if config.tie_word_embeddings else 2)
    lora = layers * sum(RANK * (fan_in + fan_out) for fan_in, fan_out in shapes.values())
    return {
        "full": embeddings + layers * block + hidden,
        "freeze": TRAINABLE_BLOCKS * block + hidden,  # top block(s) and the final norm
        "lora": lora,
        "dora": lora + layers * sum(fan_out for _, fan_out in shapes.values()),  # + one magnitude per output
        "ia3": layers * (kv + kv + inter),  # scales keys, values and the down projection's input
        "prefix": VIRTUAL_TOKENS * layers * 2 * kv,  # a key and a value prefix per layer
        "prompt": VIRTUAL_TOKENS * hidden,
    }[method]


@pytest.mark.parametrize("method", ["full", "freeze", "lora", "dora", "ia3", "prefix", "prompt"])
def test_method_trains_what_it_promises_and_lowers_the_loss(method, tiny_model, qa_file, tmp_path):
    recipe = resolve_recipe(method, overrides={
        "model": str(tiny_model), "max_steps": 30, "batch_size": 8, "lora_rank": RANK, "lora_alpha": 2 * RANK,
        "virtual_tokens": VIRTUAL_TOKENS, "trainable_blocks": TRAINABLE_BLOCKS, "warmup": 0, "patience": 0,
        "learning_rate": TINY_MODEL_RATES[method]})
    result = finetune([parse_dataset_spec(str(qa_file))], recipe, runs_dir=tmp_path / "runs")

    metadata = result.metadata
    assert metadata["trainable_parameters"] == expected_trainable(method, AutoConfig.from_pretrained(tiny_model))
    assert metadata["steps"] == 30
    assert metadata["best_val_loss"] < 0.95 * metadata["initial_val_loss"], metadata
    assert metadata["last_train_loss"] < metadata["first_train_loss"], metadata


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_qlora_without_a_gpu_says_what_to_do_instead():
    with pytest.raises(RagtuneError) as error:
        check_method_available("qlora")
    assert "GPU" in error.value.message and "--method lora" in error.value.hint


def test_unknown_method_lists_the_methods():
    with pytest.raises(RagtuneError) as error:
        resolve_recipe("adapterz")
    assert "unknown method 'adapterz'" in error.value.message and "lora" in error.value.hint
