"""Fine-tuned Hugging Face weights back to GGUF files that llama.cpp (`LlamaCppEngine`) runs.

Two ways out of a fine-tuning on a checkpoint made by `checkpoint.trainable_checkpoint`:

- `write_lora_gguf`: a PEFT LoRA adapter → a llama.cpp LoRA adapter GGUF, applied at load time
  over the unchanged base GGUF (small file; the base keeps its own quantization).
- `write_merged_gguf`: a full (merged) checkpoint → a standalone GGUF carrying all of the base
  GGUF's metadata (hyperparameters, tokenizer, chat template).

Only the llama architecture is handled (SmolLM2 and other Llama-family models).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from ragtune.atomic_files import write_atomically
from ragtune.errors import RagtuneError

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TENSOR_TYPES = {
    "F32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "Q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
_MERGE_HINT = "merge the adapter into the model (peft merge_and_unload, save_pretrained) and use write_merged_gguf"
# Adapter settings that change the computation beyond "W + scale * B @ A", which llama.cpp's LoRA cannot express.
_UNSUPPORTED_LORA_SETTINGS = {
    "use_dora": "DoRA (use_dora) rescales the weight by a learned magnitude",
    "modules_to_save": "modules_to_save trains full copies of modules",
    "trainable_token_indices": "trainable_token_indices trains embedding rows",
    "layer_replication": "layer_replication changes the layer stack",
    "target_parameters": "target_parameters adapts raw parameters, not linear modules",
    "lora_bias": "lora_bias adds a bias to lora_B",
    "use_qalora": "QA-LoRA pools the adapter's input",
    "alora_invocation_tokens": "activated LoRA only applies after invocation tokens",
}
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


@dataclass
class _Base:
    """The facts about the base GGUF that an export needs."""

    path: Path
    reader: gguf.GGUFReader
    arch: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]  # tensor name → GGUF shape (ne order: row length first)
    name_map: gguf.TensorNameMap  # gguf-py's Hugging Face → GGUF tensor names for llama

    def gguf_name(self, hf_name: str) -> str | None:
        """`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight` (None when unknown)."""
        return self.name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))

    def to_gguf_rows(self, gguf_name: str, rows: np.ndarray) -> np.ndarray:
        """Reorder the output rows of a Q or K projection (or of a LoRA B feeding one) for llama.cpp.

        Hugging Face Llama rotates each head's two halves (`rotate_half`: dims i and i + d/2 form a
        pair); llama.cpp's rope rotates adjacent dims (2i, 2i+1). convert_hf_to_gguf therefore
        interleaves the halves of every head's rows of W_q and W_k (`LlamaModel.permute`), and
        transformers undoes it when it loads a GGUF. Anything added to those rows must be
        interleaved the same way; K has n_head_kv heads (grouped-query attention).
        """
        if ".attn_q." in gguf_name:
            return _permute(rows, self.n_head)
        if ".attn_k." in gguf_name:
            return _permute(rows, self.n_head_kv)
        return rows


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute: per head, rows [a0..a(n-1), b0..b(n-1)] → [a0, b0, a1, b1, ...]."""
    head_rows = weights.shape[0] // n_head
    return (weights.reshape(n_head, 2, head_rows // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _read_base(base_gguf: Path) -> _Base:
    base_gguf = Path(base_gguf)
    if not base_gguf.is_file():
        raise RagtuneError(f"base GGUF {base_gguf} does not exist",
                           "pass the GGUF the checkpoint was converted from (checkpoint.source_gguf)")
    try:
        reader = gguf.GGUFReader(base_gguf)
    except (ValueError, OSError) as exc:
        raise RagtuneError(f"cannot read base GGUF {base_gguf}: {exc}",
                           "check that it is a complete GGUF file") from exc

    def value(key: str):
        field = reader.fields.get(key)
        if field is None:
            raise RagtuneError(f"base GGUF {base_gguf} has no '{key}'", "use a model GGUF, not an adapter")
        return field.contents()

    arch = value(gguf.Keys.General.ARCHITECTURE)
    if arch != "llama":
        raise RagtuneError(f"GGUF export supports the llama architecture; {base_gguf} is '{arch}'",
                           "fine-tune a Llama-family model such as smollm2-135m")
    n_head, n_blocks = int(value(f"{arch}.attention.head_count")), int(value(f"{arch}.block_count"))
    kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
    return _Base(
        path=base_gguf, reader=reader, arch=arch, n_blocks=n_blocks, n_head=n_head,
        n_head_kv=int(kv_field.contents()) if kv_field is not None else n_head,
        shapes={t.name: tuple(int(d) for d in t.shape) for t in reader.tensors},
        name_map=gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks),
    )


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ---------------------------------------------------------------------------------------------- LoRA


def _peft_scale(config: dict, alpha: float, rank: int) -> float:
    """PEFT's LoRA multiplier: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora."""
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _module_alpha(config: dict, module: str) -> float:
    """lora_alpha for one module; alpha_pattern keys match as in peft.utils.other.get_pattern_key."""
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return alpha
    return config.get("lora_alpha", 8)


def _check_lora_config(config: dict, adapter_dir: Path) -> None:
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise RagtuneError(f"{adapter_dir} is a {config.get('peft_type')} adapter; only LoRA adapters convert",
                           _MERGE_HINT)
    problems = [why for key, why in _UNSUPPORTED_LORA_SETTINGS.items() if config.get(key)]
    if config.get("bias", "none") != "none":
        problems.append(f"bias='{config['bias']}' trains the base model's biases")
    if problems:
        raise RagtuneError(f"the adapter in {adapter_dir} cannot be a llama.cpp LoRA adapter: "
                           f"{'; '.join(problems)}; the adapter must be merged instead", _MERGE_HINT)


def write_lora_gguf(adapter_dir: Path, base_gguf: Path, out_path: Path) -> Path:
    """Convert a PEFT LoRA adapter folder into a llama.cpp LoRA adapter GGUF for `base_gguf`; returns `out_path`.

    Supports plain LoRA on q/k/v/o/gate/up/down_proj (any rank, rank_pattern, alpha_pattern,
    rsLoRA). Anything else (DoRA, modules_to_save, other targets) raises RagtuneError: merge
    the adapter and use `write_merged_gguf` instead.
    """
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config_path, weights_path = adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise RagtuneError(f"{adapter_dir} is not a PEFT adapter folder",
                           "it needs adapter_config.json and adapter_model.safetensors (PeftModel.save_pretrained)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    _check_lora_config(config, adapter_dir)
    found: list[tuple[str, str, np.ndarray]] = []  # (HF module, "A" or "B", tensor)
    for key, tensor in load_file(weights_path).items():
        match = _LORA_KEY.match(key)
        if not match or match["module"].rsplit(".", 1)[-1] not in LORA_MODULES:
            raise RagtuneError(f"adapter tensor '{key}' is not a LoRA weight of {'/'.join(LORA_MODULES)}; "
                               "the adapter must be merged instead", _MERGE_HINT)
        found.append((match["module"], match["part"], tensor.float().numpy()))
    if not found:
        raise RagtuneError(f"the adapter in {adapter_dir} has no LoRA weights", "save the trained PeftModel again")

    base = _read_base(base_gguf)
    pairs: dict[str, dict[str, np.ndarray]] = {}  # GGUF weight name → {"A": ..., "B": ...}
    modules: dict[str, str] = {}  # GGUF weight name → HF module name
    for module, part, tensor in found:
        name = base.gguf_name(module + ".weight")
        if name is None or name not in base.shapes:
            raise RagtuneError(f"adapter module '{module}' has no tensor in {base.path}",
                               "the adapter was trained on a different base model")
        pairs.setdefault(name, {})[part] = tensor
        modules[name] = module

    # llama.cpp scales every adapter matrix by alpha / rank (rank = lora_b's ne[0]), one alpha per file.
    # Write the alpha that reproduces PEFT's scale for the configured r; a module with its own rank or
    # alpha (rank_pattern, alpha_pattern) gets the remaining factor folded into its lora_b.
    rank = int(config.get("r", 8))
    alpha = _peft_scale(config, config.get("lora_alpha", 8), rank) * rank
    tensors: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name in (n for n in base.shapes if n in pairs):  # the base file's tensor order
        module, part = modules[name], pairs[name]
        if set(part) != {"A", "B"}:
            raise RagtuneError(f"adapter module '{module}' lacks lora_{'B' if 'A' in part else 'A'}",
                               "the adapter file is incomplete; save it again")
        lora_a, lora_b = part["A"], part["B"]  # (r, in) and (out, r), as nn.Linear stores them
        n_in, n_out = base.shapes[name][:2]
        if lora_a.shape[1] != n_in or lora_b.shape[0] != n_out or lora_a.shape[0] != lora_b.shape[1]:
            raise RagtuneError(f"adapter module '{module}' has shapes {lora_a.shape} and {lora_b.shape}, "
                               f"which do not fit {name} ({n_out}x{n_in}) of {base.path}",
                               "the adapter was trained on a different base model")
        r = lora_a.shape[0]
        factor = _peft_scale(config, _module_alpha(config, module), r) * r / alpha
        if not math.isclose(factor, 1.0, rel_tol=1e-9):
            lora_b = lora_b * factor
        # lora_b's rows are W's output rows: Q/K need llama.cpp's rotary interleaving like W itself.
        tensors.append((name, lora_a, base.to_gguf_rows(name, lora_b)))

    def write(path: Path) -> None:
        writer = gguf.GGUFWriter(path, base.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for name, lora_a, lora_b in tensors:
            # numpy shapes are (rows, cols); GGUF stores them reversed: lora_a [in, r], lora_b [r, out].
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(lora_a, dtype=np.float32))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(lora_b, dtype=np.float32))
        _finish(writer)

    return write_atomically(out_path, write)


# -------------------------------------------------------------------------------------------- merged


def _load_hf_weights(model_dir: Path) -> dict[str, Callable[[], np.ndarray]]:
    """Tensor name → loader (float32 numpy) over every safetensors file of a checkpoint folder."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"  # sharded checkpoints list their files here
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
    else:
        files = [model_dir / "model.safetensors"]
    if not all(file.is_file() for file in files):
        raise RagtuneError(f"{model_dir} has no complete safetensors weights (model.safetensors)",
                           "save the model with save_pretrained")
    loaders: dict[str, Callable[[], np.ndarray]] = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            names = list(handle.keys())

        for name in names:
            def load(file=file, name=name) -> np.ndarray:
                with safe_open(file, framework="pt") as handle:
                    return handle.get_tensor(name).float().numpy()

            loaders[name] = load
    return loaders


def _check_hparams(config: dict, base: _Base, model_dir: Path) -> None:
    if config.get("model_type") != "llama":
        raise RagtuneError(f"{model_dir} is a '{config.get('model_type')}' model; GGUF export supports llama",
                           "fine-tune a Llama-family model such as smollm2-135m")
    fields = base.reader.fields
    expected = {
        "num_hidden_layers": base.n_blocks,
        "num_attention_heads": base.n_head,
        "num_key_value_heads": base.n_head_kv,
        "hidden_size": int(fields[f"{base.arch}.embedding_length"].contents()),
        "intermediate_size": int(fields[f"{base.arch}.feed_forward_length"].contents()),
    }
    wrong = [f"{key}={config.get(key)} (base: {value})" for key, value in expected.items()
             if config.get(key, value) != value]
    if wrong:
        raise RagtuneError(f"{model_dir} does not match the base GGUF {base.path}: {', '.join(wrong)}",
                           "pass the GGUF the model was fine-tuned from")


def _copy_metadata(base: _Base, writer: gguf.GGUFWriter) -> None:
    """Every key/value of the base GGUF except those the writer sets itself or that describe the old tensors."""
    skip = {gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE, gguf.Keys.General.QUANTIZATION_VERSION,
            gguf.Keys.General.ALIGNMENT}
    for field in base.reader.fields.values():
        if field.name in skip or field.name.startswith("GGUF."):  # GGUF.* are the reader's header fields
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
    alignment = base.reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.add_custom_alignment(int(alignment.contents()))


def _encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The tensor in the requested type; norms and other 1-D tensors stay F32 (as llama.cpp expects)."""
    if data.ndim < 2 or qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        if data.shape[-1] % block == 0:
            return gguf.quants.quantize(data, qtype), qtype
        # rows that are not whole Q8_0 blocks: F16, as convert_hf_to_gguf does
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_merged_gguf(model_dir: Path, base_gguf: Path, out_path: Path, tensor_type: str = "Q8_0") -> Path:
    """Write a full Hugging Face llama checkpoint (e.g. a merged fine-tune) as a GGUF llama.cpp loads.

    Metadata (hyperparameters, tokenizer, chat template) is copied from `base_gguf`, the file
    the checkpoint came from; 2-D weights are written as `tensor_type` ("Q8_0", "F16" or
    "F32"), norms in F32. Returns `out_path`, written atomically.
    """
    model_dir = Path(model_dir)
    kind = tensor_type.upper()
    if kind not in TENSOR_TYPES:
        raise RagtuneError(f"unsupported GGUF tensor type '{tensor_type}'", f"use one of {', '.join(TENSOR_TYPES)}")
    qtype, file_type = TENSOR_TYPES[kind]
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise RagtuneError(f"{model_dir} is not a Hugging Face model folder (no config.json)",
                           "save the merged model with save_pretrained")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    base = _read_base(base_gguf)
    _check_hparams(config, base, model_dir)
    weights = _load_hf_weights(model_dir)

    sources: dict[str, Callable[[], np.ndarray]] = {}  # GGUF tensor name → loader
    for hf_name, load in weights.items():
        if hf_name.endswith("rotary_emb.inv_freq"):  # recomputed from the rope metadata
            continue
        name = base.gguf_name(hf_name)
        if name is None:
            raise RagtuneError(f"{model_dir} has a tensor '{hf_name}' with no llama GGUF counterpart",
                               "export a plain Llama checkpoint (merge adapters first)")
        sources[name] = load
    embedding = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight"
    output = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.OUTPUT] + ".weight"
    # The base ties the output projection to the embeddings (llama.cpp then reuses token_embd):
    # keep it tied unless fine-tuning made lm_head different.
    if (output in sources and output not in base.shapes and embedding in sources
            and np.array_equal(sources[output](), sources[embedding]())):
        del sources[output]
    if output in base.shapes and output not in sources and embedding in sources:
        sources[output] = sources[embedding]  # a tied checkpoint over an untied base
    carried = {gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"}  # not a trainable weight
    missing = [name for name in base.shapes if name not in sources and name not in carried]
    if missing:
        raise RagtuneError(f"{model_dir} lacks tensors of the base model: {', '.join(missing[:5])}",
                           "pass the GGUF the model was fine-tuned from")
    order = [name for name in base.shapes if name in sources or name in carried]
    order += sorted(name for name in sources if name not in base.shapes)
    base_tensors = {t.name: t for t in base.reader.tensors}

    def write(path: Path) -> None:
        writer = gguf.GGUFWriter(path, base.arch)
        _copy_metadata(base, writer)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)  # as convert_hf_to_gguf writes it, for every type
        for name in order:
            if name not in sources:  # carried over unchanged from the base file
                tensor = base_tensors[name]
                writer.add_tensor(name, np.asarray(tensor.data), raw_dtype=tensor.tensor_type)
                continue
            rows = sources[name]()
            expected = base.shapes.get(name)
            if expected is not None and tuple(reversed(rows.shape)) != expected:
                raise RagtuneError(f"tensor {name} has shape {rows.shape}, the base has {tuple(reversed(expected))}",
                                   "pass the GGUF the model was fine-tuned from")
            data, dtype = _encode(base.to_gguf_rows(name, rows), qtype)
            writer.add_tensor(name, data, raw_dtype=dtype if dtype == gguf.GGMLQuantizationType.Q8_0 else None)
        _finish(writer)

    return write_atomically(out_path, write)
