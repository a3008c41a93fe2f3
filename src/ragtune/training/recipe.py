"""A training recipe: every hyperparameter of a fine-tuning run, with defaults per method.

Precedence: the method's defaults < a YAML recipe file < command-line overrides. The resolved recipe is
saved in the run directory, so a run can be resumed and repeated exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragtune.config import read_yaml_mapping, validation_problems
from ragtune.data import PrepareOptions
from ragtune.errors import RagtuneError

METHODS = ("full", "lora", "dora", "ia3", "prefix", "prompt", "freeze", "qlora")
OBJECTIVES = ("sft", "cpt", "raft")

# Learning rates that train SmolLM2-135M stably on CPU (BENCHMARKS.md): adapters with few parameters need
# larger steps; full and freeze training move every weight of a block and need small ones.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "full": {"learning_rate": 5e-5},
    "freeze": {"learning_rate": 1e-4},
    "lora": {"learning_rate": 1e-3},
    "dora": {"learning_rate": 1e-3},
    "qlora": {"learning_rate": 1e-3},
    "ia3": {"learning_rate": 1e-2},
    "prefix": {"learning_rate": 1e-2},
    "prompt": {"learning_rate": 3e-2},
}


class TrainingRecipe(BaseModel):
    """Hyperparameters of one run; see `ragtune finetune --help` for the command-line names."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m", description="Base generator: a registry name, .gguf file or HF folder.")
    method: Literal["full", "lora", "dora", "ia3", "prefix", "prompt", "freeze", "qlora"] = "lora"
    objective: Literal["sft", "cpt", "raft"] = "sft"
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, ge=1, description="Rows per device per step (split into micro-batches with "
                                                 "gradient accumulation when memory_limit_gb requires).")
    gradient_accumulation: int = Field(1, ge=1)
    epochs: float | None = Field(None, gt=0, description="Passes over the data; None chooses by dataset size.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (wins over epochs).")
    warmup: float = Field(0.05, ge=0, description="Warmup: a fraction of the steps (<1) or a step count.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    # peft's default; 0.05 costs a quarter of LoRA's speed on CPU (BENCHMARKS.md)
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA/DoRA/QLoRA adapter dropout (other methods train "
                                                        "with the model's own dropout settings).")
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where the hardware has it.")
    gradient_checkpointing: bool = Field(False, description="Always recompute activations in the backward pass "
                                                            "(otherwise only when one row would not fit).")
    memory_limit_gb: float | None = Field(None, gt=0, description="Memory training may add (optimizer state, "
                                                                  "activations); None: 80% of the free memory, at "
                                                                  "most 1.6 GB on CPU.")
    packing: bool = False
    # evaluation, checkpoints, early stopping
    eval_every: int | None = Field(None, ge=1, description="Validation every N steps; None: about 10 per run.")
    patience: int = Field(3, ge=0, description="Stop after this many evaluations without improvement; 0: never.")
    save_every: int | None = Field(None, ge=1, description="Checkpoint every N steps (aligned with validation); "
                                                           "None: by time, see checkpoint_minutes.")
    checkpoint_minutes: float = Field(10, gt=0, description="With save_every unset: checkpoint once this many "
                                                            "minutes have passed since the last checkpoint, and "
                                                            "whenever validation loss reaches a new best.")
    generation_samples: int = Field(0, ge=0, description="Validation rows the finished model answers, one at a "
                                                         "time, for exact match and F1 in the metadata.")
    # method settings
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float = Field(32, gt=0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    virtual_tokens: int = Field(16, ge=1, description="Prefix / prompt tuning length.")
    trainable_blocks: int | None = Field(None, ge=1, description="freeze: how many top transformer blocks train "
                                                                 "(default: a quarter of them).")
    data: PrepareOptions = PrepareOptions()

    def describe_changes(self) -> dict[str, Any]:
        """The fields that differ from the defaults of this recipe's method (for logs and metadata)."""
        defaults = default_recipe(self.method).model_dump()
        return {key: value for key, value in self.model_dump().items() if defaults.get(key) != value}


def default_recipe(method: str = "lora") -> TrainingRecipe:
    """The recipe with `method`'s defaults."""
    if method not in METHODS:
        raise RagtuneError(f"unknown method '{method}'", f"choose one of: {', '.join(METHODS)}")
    return TrainingRecipe(method=method, **METHOD_DEFAULTS[method])


def resolve_recipe(method: str | None = None, recipe_file: Path | None = None,
                   overrides: dict[str, Any] | None = None, project_defaults: dict[str, Any] | None = None
                   ) -> TrainingRecipe:
    """Method defaults < `project_defaults` (e.g. the project's generator) < `recipe_file` (YAML) < `overrides`
    (None values are ignored)."""
    from_file = _read_recipe_file(recipe_file) if recipe_file else {}
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    chosen = method or overrides.pop("method", None) or from_file.get("method") or "lora"
    merged = {**default_recipe(chosen).model_dump(exclude={"data"}), **(project_defaults or {}), **from_file,
              **overrides, "method": chosen}
    data = {**from_file.get("data", {}), **overrides.get("data", {})}
    merged["data"] = data
    try:
        return TrainingRecipe.model_validate(merged)
    except ValidationError as exc:
        where = f"{recipe_file}: " if recipe_file else ""
        raise RagtuneError(f"{where}invalid training recipe: {validation_problems(exc)}",
                           "correct the named settings") from exc


def _read_recipe_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RagtuneError(f"recipe file not found: {path}", "pass an existing YAML file to --recipe")
    return read_yaml_mapping(path, mapping_hint="e.g. `learning_rate: 0.001`")


def save_recipe(recipe: TrainingRecipe, path: Path) -> None:
    """Write the resolved recipe as YAML (readable and reusable with --recipe)."""
    path.write_text(yaml.safe_dump(recipe.model_dump(), sort_keys=False), encoding="utf-8")


def load_recipe(path: Path) -> TrainingRecipe:
    """Read a recipe saved by `save_recipe`."""
    return TrainingRecipe.model_validate(_read_recipe_file(path))
