"""Trainable Hugging Face checkpoints for generators, converted once from GGUF files.

Fine-tuning runs on transformers + peft, which need a Hugging Face folder; the packaged
generators are GGUF files. `trainable_checkpoint` dequantises a GGUF into a float32
checkpoint under `$RAGTUNE_CACHE/checkpoints` (default `~/.cache/ragtune`) the first time
and returns the cached folder afterwards. The folder records which GGUF it came from
(`ragtune_source.json`) so that a fine-tuned result can be exported back onto that file.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.cache import build_once, default_cache_dir, file_fingerprint
from ragtune.errors import RagtuneError
from ragtune.models.registry import resolve_generator

SOURCE_FILE = "ragtune_source.json"
SOURCE_KEY = "ragtune_source_gguf"


def trainable_checkpoint(generator: str, *, cache_dir: Path | None = None) -> Path:
    """A local Hugging Face folder for `generator` (a name or path accepted by `resolve_generator`).

    A Hugging Face folder is returned as it is; a finished fine-tuning run as its merged export (written
    once into the run's `merged/`). A GGUF file is converted once into
    `<cache_dir>/checkpoints/<stem>-<hash>` (float32 safetensors, tokenizer with its chat
    template, generation config); later calls return that folder without converting again.
    """
    spec = resolve_generator(generator)
    if spec.kind == "hf":
        return Path(spec.location)
    if spec.kind == "openai":
        raise RagtuneError(
            f"cannot fine-tune a remote model ({generator}): its weights are on the server",
            "fine-tune a local model (a built-in name, a .gguf file or a Hugging Face folder) and serve that",
        )
    if spec.kind == "run":  # e.g. supervised tuning after continued pre-training: start from the merged run
        from ragtune.training.artifacts import merged_checkpoint

        return merged_checkpoint(Path(spec.location))
    if spec.kind != "gguf":
        raise RagtuneError(f"cannot fine-tune {generator}: unsupported model kind '{spec.kind}'",
                           "use a .gguf file or a local Hugging Face model folder")
    gguf_path = Path(spec.location).resolve()
    folder = (cache_dir or default_cache_dir()).expanduser() / "checkpoints" / \
        f"{gguf_path.stem}-{file_fingerprint(gguf_path)}"

    def convert(temp: Path) -> None:
        _convert(gguf_path, temp)
        # Written last: its presence marks a complete conversion.
        (temp / SOURCE_FILE).write_text(_source_record(gguf_path), encoding="utf-8")

    checkpoint = build_once(folder, SOURCE_FILE, convert)
    # The folder is named by the file's content: the same file may have moved since (a package reinstalled in a new
    # virtual environment), and the record must name where it is now, for export and for the next run.
    if (checkpoint / SOURCE_FILE).read_text(encoding="utf-8") != _source_record(gguf_path):
        write_bytes_atomically(checkpoint / SOURCE_FILE, _source_record(gguf_path).encode("utf-8"))
    return checkpoint


def _source_record(gguf_path: Path) -> str:
    return json.dumps({SOURCE_KEY: str(gguf_path)}, indent=2) + "\n"


def source_gguf(checkpoint_dir: Path) -> Path | None:
    """The GGUF file a checkpoint was converted from, or None for a checkpoint that did not come from one."""
    record = Path(checkpoint_dir) / SOURCE_FILE
    if not record.is_file():
        return None
    path = Path(json.loads(record.read_text(encoding="utf-8"))[SOURCE_KEY])
    if not path.is_file():
        raise RagtuneError(f"{checkpoint_dir} was converted from {path}, which no longer exists",
                           "reinstall the model package, or convert the checkpoint again from the current file")
    return path


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantise `gguf_path` with transformers (which undoes llama.cpp's Q/K rotary permutation) into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, OSError) as exc:
        raise RagtuneError(f"cannot convert {gguf_path} to a trainable checkpoint: {exc}",
                           "transformers must support the GGUF's architecture; or pass a Hugging Face folder") from exc
    # The weights are plain float32 tensors now; dropping the GGUF quantizer makes the model an
    # ordinary checkpoint that save_pretrained writes (it refuses GGUF-"quantized" models).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)  # config.json, generation_config.json, model.safetensors
    tokenizer.save_pretrained(out)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
