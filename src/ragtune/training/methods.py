"""Fine-tuning methods: which parameters of a causal LM train, built with peft where it has the method.

| method | what trains                                                                 |
|--------|-----------------------------------------------------------------------------|
| full   | every weight                                                                |
| freeze | the top `trainable_blocks` blocks (default a quarter) and the final norm      |
| lora   | rank-`lora_rank` update matrices on `target_modules` (peft LoraConfig)      |
| dora   | LoRA plus a learned magnitude per output feature (LoraConfig use_dora)      |
| qlora  | LoRA over a 4-bit NF4 base model (bitsandbytes, CUDA only)                  |
| ia3    | learned rescaling vectors on keys, values and the FFN input (peft IA3Config) |
| prefix | `virtual_tokens` trained key/value prefixes in every layer (PrefixTuning)   |
| prompt | `virtual_tokens` trained input embeddings (PromptTuning)                    |
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ragtune.errors import RagtuneError
from ragtune.training.recipe import TrainingRecipe

PEFT_METHODS = ("lora", "dora", "qlora", "ia3", "prefix", "prompt")
PROMPT_LEARNING_METHODS = ("prefix", "prompt")  # virtual tokens: no weights to merge into the model
# Prefix tuning feeds its virtual tokens as cached keys and values, which transformers drops when it recomputes
# activations (gradient checkpointing): the attention mask and the keys then disagree in length.
NO_GRADIENT_CHECKPOINTING = ("prefix",)


def check_method_available(method: str) -> None:
    """Raise a clear error when `method` cannot run on this machine (QLoRA needs CUDA and bitsandbytes)."""
    if method != "qlora":
        return
    if not torch.cuda.is_available():
        raise RagtuneError("qlora quantises the base model to 4 bits with bitsandbytes, which needs an NVIDIA GPU; "
                           "none is available here",
                           "on a CPU use --method lora (same adapters, full-precision base), or run on a CUDA machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RagtuneError("qlora needs the bitsandbytes package", "pip install bitsandbytes") from exc


def check_gradient_checkpointing(recipe: TrainingRecipe) -> None:
    """Refuse gradient checkpointing for the methods that cannot use it."""
    if recipe.gradient_checkpointing and recipe.method in NO_GRADIENT_CHECKPOINTING:
        raise RagtuneError(f"{recipe.method} tuning cannot train with gradient checkpointing (its key/value prefix "
                           "is dropped when activations are recomputed)",
                           "set gradient_checkpointing: false, or use lora")


def quantization_config(method: str):
    """The from_pretrained quantization config for `method` (QLoRA's NF4), or None."""
    if method != "qlora":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def apply_method(model: nn.Module, recipe: TrainingRecipe) -> nn.Module:
    """Mark the parameters `recipe.method` trains; returns the model to train (a PeftModel for peft methods)."""
    if recipe.method == "full":
        model.requires_grad_(True)
        return model
    if recipe.method == "freeze":
        return _freeze_lower_blocks(model, recipe.trainable_blocks)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if recipe.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    with warnings.catch_warnings():  # peft reads a transformers property deprecated in v5: nothing a user can do
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, peft_config(recipe))


def peft_config(recipe: TrainingRecipe):
    """The peft config object for a peft method."""
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    task = TaskType.CAUSAL_LM
    if recipe.method in ("lora", "dora", "qlora"):
        return LoraConfig(task_type=task, r=recipe.lora_rank, lora_alpha=recipe.lora_alpha,
                          lora_dropout=recipe.dropout, target_modules=list(recipe.target_modules),
                          use_dora=recipe.method == "dora")
    if recipe.method == "ia3":
        return IA3Config(task_type=task)  # peft's per-architecture defaults: keys, values and the FFN down input
    if recipe.method == "prefix":
        return PrefixTuningConfig(task_type=task, num_virtual_tokens=recipe.virtual_tokens)
    if recipe.method == "prompt":
        return PromptTuningConfig(task_type=task, num_virtual_tokens=recipe.virtual_tokens)
    raise RagtuneError(f"'{recipe.method}' is not a peft method", f"peft methods: {', '.join(PEFT_METHODS)}")


def _freeze_lower_blocks(model: nn.Module, trainable_blocks: int | None) -> nn.Module:
    blocks = _transformer_blocks(model)
    trainable_blocks = trainable_blocks or max(1, len(blocks) // 4)
    if trainable_blocks > len(blocks):
        raise RagtuneError(f"freeze: trainable_blocks={trainable_blocks} but the model has {len(blocks)} blocks",
                           f"choose at most {len(blocks)}, or --method full to train everything")
    model.requires_grad_(False)
    for block in blocks[len(blocks) - trainable_blocks:]:
        block.requires_grad_(True)
    final_norm = getattr(model.get_decoder(), "norm", None)
    if final_norm is not None:
        final_norm.requires_grad_(True)
    return model


def _transformer_blocks(model: nn.Module) -> nn.ModuleList:
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise RagtuneError(f"freeze: cannot find the transformer blocks of {type(model).__name__}",
                           "use --method full or a peft method for this architecture")
    return layers


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, tied weights counted once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
