"""What a finished run leaves behind for inference: the PEFT adapter or full model, and llama.cpp files.

| method                    | saved as                 | served by llama.cpp as                        |
|---------------------------|--------------------------|-----------------------------------------------|
| lora, qlora               | adapter/ (PEFT)          | adapter.gguf over the base GGUF (no merge)     |
| dora, ia3                 | adapter/ (PEFT)          | model.gguf (merged: no llama.cpp equivalent)   |
| full, freeze              | model/ (transformers)    | model.gguf                                     |
| prefix, prompt            | adapter/ (PEFT)          | - (virtual tokens: served by transformers)     |

A base model given as a Hugging Face folder (no GGUF) is served by the transformers engine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.training.checkpoint import SOURCE_FILE, SOURCE_KEY, source_gguf
from ragtune.training.methods import PROMPT_LEARNING_METHODS
from ragtune.training.runs import ADAPTER_DIR, ADAPTER_GGUF, MODEL_DIR, MODEL_GGUF

LORA_ADAPTER_METHODS = ("lora", "qlora")
MERGED_DIR = "merged"


def trained_weights_dir(run_dir: Path) -> Path:
    """adapter/ for peft methods, model/ for full and freeze."""
    adapter = run_dir / ADAPTER_DIR
    return adapter if adapter.is_dir() else run_dir / MODEL_DIR


def load_merged_model(run_dir: Path, base_checkpoint: Path):
    """The fine-tuned model as plain transformers weights: the adapter merged into the base, or the full model."""
    from transformers import AutoModelForCausalLM

    weights = trained_weights_dir(run_dir)
    if weights.name == MODEL_DIR:
        return AutoModelForCausalLM.from_pretrained(weights)
    from peft import PeftModel

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_checkpoint), weights)
    if model.peft_config["default"].peft_type.value in ("PREFIX_TUNING", "PROMPT_TUNING"):
        raise RagtuneError("prefix and prompt tuning learn virtual tokens, which cannot be merged into weights",
                           "serve the run as it is (`ragtune ask --model RUN_DIR`) or train with lora")
    return model.merge_and_unload()


def write_llamacpp_files(run_dir: Path, method: str, base_checkpoint: Path) -> Path | None:
    """Write the GGUF llama.cpp serves this run with (see the table above); None when it cannot."""
    from ragtune.training.gguf_export import write_lora_gguf, write_merged_gguf

    base_gguf = source_gguf(base_checkpoint)
    if base_gguf is None or method in PROMPT_LEARNING_METHODS:
        return None
    if method in LORA_ADAPTER_METHODS:
        return write_lora_gguf(run_dir / ADAPTER_DIR, base_gguf, run_dir / ADAPTER_GGUF)
    if method in ("full", "freeze"):
        return write_merged_gguf(run_dir / MODEL_DIR, base_gguf, run_dir / MODEL_GGUF)
    with tempfile.TemporaryDirectory(dir=run_dir) as scratch:
        load_merged_model(run_dir, base_checkpoint).save_pretrained(scratch)
        return write_merged_gguf(Path(scratch), base_gguf, run_dir / MODEL_GGUF)


def merged_checkpoint(run_dir: Path) -> Path:
    """The run merged into a trainable checkpoint (`RUN/merged`, exported on first use)."""
    from ragtune.training.runs import read_metadata

    merged = run_dir / MERGED_DIR
    if not (merged / "config.json").is_file():
        export_merged(run_dir, Path(read_metadata(run_dir)["base_checkpoint"]), merged)
    return merged


def export_merged(run_dir: Path, base_checkpoint: Path, out_dir: Path) -> dict[str, str]:
    """A standalone merged model: a transformers folder (with tokenizer) and, for GGUF bases, a GGUF file
    recorded as the folder's source, so that a fine-tune of the merged model exports onto it."""
    from transformers import AutoTokenizer

    from ragtune.training.gguf_export import write_merged_gguf

    if out_dir.exists() and any(out_dir.iterdir()):
        raise RagtuneError(f"{out_dir} already exists and is not empty", "choose another --out or delete it")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    load_merged_model(run_dir, base_checkpoint).save_pretrained(staging)
    AutoTokenizer.from_pretrained(trained_weights_dir(run_dir)).save_pretrained(staging)
    base_gguf = source_gguf(base_checkpoint)
    if base_gguf is not None:
        write_merged_gguf(staging, base_gguf, staging / MODEL_GGUF)
        (staging / SOURCE_FILE).write_text(json.dumps({SOURCE_KEY: str((out_dir / MODEL_GGUF).resolve())}),
                                           encoding="utf-8")
    if out_dir.exists():
        out_dir.rmdir()
    staging.rename(out_dir)
    written = {"model_dir": str(out_dir)}
    if base_gguf is not None:
        written["gguf"] = str(out_dir / MODEL_GGUF)
    return written
