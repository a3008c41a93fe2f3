"""The fast CPU path for a sentence-transformers embedder: the model exported once to OpenVINO, checked against the
original before it is used.

Chosen with measurements (BENCHMARKS.md, "Embedder on CPU"): on all-MiniLM-L6-v2 OpenVINO with a bfloat16
inference hint embeds 2.2-2.3x faster than torch float32 (1.4x in float32 on CPUs without bfloat16) with a mean
cosine of 0.99998 to the original; ONNX Runtime's int8 paths were faster still but changed the top hit of a third
of the queries. sentence-transformers' own `backend="openvino"` needs optimum-intel, which does not install beside
transformers 5, so the export here converts the torch module directly (`openvino.convert_model`).

The export is written under the ragtune cache (`embedders/<folder>-<hash of the weights and openvino version>`),
never into the model's folder; the check (`verify`) encodes a fixed sample with both paths and is kept beside the
export, per precision and CPU, so later processes neither re-export nor load the torch model.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ragtune.atomic_files import write_atomically
from ragtune.cache import build_once, default_cache_dir, file_fingerprint
from ragtune.process_memory import release_freed_memory

IR_FILE = "model.xml"
SETTINGS_FILE = "export.json"
# Outputs closer than this to the original's on every text of the sample pass the check. bfloat16 inference
# measures 0.99996 at worst on 3,395 COVID-QA chunks; int8 quantisation, which changed top hits, 0.83-0.98.
MIN_COSINE = 0.999
# Mean pooling over the transformer's last hidden state, then L2 normalisation, is what the export reproduces.
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
SAMPLE_SENTENCES = (
    "What is the incubation period of the virus?",
    "The median incubation period was estimated to be 5.1 days, and 97.5% of those who develop symptoms do so "
    "within 11.5 days of infection.",
    "SARS-CoV-2 enters human cells by binding the ACE2 receptor with the receptor-binding domain of its spike.",
    "Quarterly revenue rose 12% to $4.2bn, driven by subscriptions in Europe and Asia.",
    "def merge(a, b):\n    return sorted(a + b)",
    "Le comité a approuvé le budget après une longue discussion sur les priorités de l'année.",
    "Olympus Mons on Mars is the tallest volcano in the solar system, about 22 km high.",
    "Patients with hypertension (n = 1,204) were randomised to the intervention or to usual care.",
    "How do I reset my password if I no longer have access to the e-mail address on my account?",
    "The court held that the contract was void because one party lacked the capacity to consent.",
    "Store the vectors in float32; queries are normalised so that the dot product equals the cosine.",
    "ok",
)


class ExportUnavailable(Exception):
    """The fast path cannot be built for this model or machine; the message says why."""


@dataclass(frozen=True)
class Verification:
    """How the exported model compared with the original on the fixed sample."""

    precision: str
    cpu: str
    texts: int
    min_cosine: float
    mean_cosine: float
    seconds_original: float
    seconds_exported: float

    @property
    def accurate(self) -> bool:
        return self.min_cosine >= MIN_COSINE

    @property
    def speedup(self) -> float:
        return self.seconds_original / max(self.seconds_exported, 1e-9)

    def describe(self) -> str:
        return (f"min cosine {self.min_cosine:.5f} to the original on {self.texts} texts (bound {MIN_COSINE}), "
                f"{self.speedup:.2f}x its speed")


def sample_texts() -> list[str]:
    """The fixed verification sample: single sentences, pairs, and long texts past the 256-token truncation."""
    sentences = list(SAMPLE_SENTENCES)
    pairs = [f"{a} {b}" for a, b in zip(sentences[::2], sentences[1::2])]
    long_texts = [" ".join(sentences[i:] + sentences[:i]) * 2 for i in range(0, len(sentences), 3)]
    return sentences + pairs + long_texts


def export_folder(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """The cache folder of `model_dir`'s export (named after the weights' and openvino's versions)."""
    import openvino

    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not weights:
        raise ExportUnavailable(f"{model_dir} has no weights file")
    version = openvino.__version__.split("-")[0]
    name = f"{model_dir.name}-{file_fingerprint(*weights, model_dir / 'config.json')}-ov{version}"
    return (cache_dir or default_cache_dir()).expanduser() / "embedders" / name


def export(model_dir: Path, cache_dir: Path | None = None) -> Path:
    """Convert the folder's transformer to OpenVINO IR once; the folder holding it and its settings."""
    return build_once(export_folder(model_dir, cache_dir), SETTINGS_FILE, lambda temp: _convert(model_dir, temp))


def _convert(model_dir: Path, out: Path) -> None:
    """Export the sentence-transformers model in `model_dir`: its transformer as IR, and the tokenisation settings
    the encoder must reproduce, read from the loaded model itself (SETTINGS_FILE, written last)."""
    import openvino
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    _check_supported(model)
    transformer = model[0].auto_model.eval()
    transformer.set_attn_implementation("eager")

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    # The example has a padded row: traced without one, transformers' masking takes its no-padding shortcut and
    # the graph would ignore the attention mask.
    example = model.tokenizer(["a padded row", "a longer row that sets the padded length of the batch"],
                              padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in example]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # tracing reads every attribute, e.g. the loss function it warns about
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about Python-side shape checks, deprecations
            converted = openvino.convert_model(LastHiddenState(), example_input={n: example[n] for n in names},
                                               input=[(n, [-1, -1], openvino.Type.i64) for n in names])
    finally:
        hf_logging.set_verbosity(verbosity)
    openvino.save_model(converted, str(out / IR_FILE))  # weights in float16 on disk, computed in bf16/f32
    settings = {"max_seq_length": int(model.max_seq_length), "do_lower_case": bool(getattr(model[0], "do_lower_case",
                                                                                          False)),
                "inputs": names}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _check_supported(model) -> None:
    """Raise ExportUnavailable unless the model is a transformer + mean pooling (+ normalize)."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind not in SUPPORTED_MODULES for kind in kinds):
        raise ExportUnavailable(f"its modules {kinds} are not transformer + pooling (+ normalize)")
    pooling = model[1].get_config_dict()
    modes = pooling.get("pooling_mode") or [key.removeprefix("pooling_mode_") for key, on in pooling.items()
                                            if key.startswith("pooling_mode_") and on]  # before ST 6
    if modes not in ("mean", ["mean"], ["mean_tokens"]):
        raise ExportUnavailable(f"its pooling is {modes}: only mean pooling is exported")


class OpenVINOEncoder:
    """Mean-pooled, L2-normalised embeddings from the exported model, tokenised as sentence-transformers does."""

    runtime = "openvino"

    def __init__(self, model_dir: Path, export_dir: Path, *, precision: str | None = None):
        import openvino
        from transformers import AutoTokenizer

        core = openvino.Core()
        supports_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.precision = precision or ("bf16" if supports_bf16 else "f32")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        settings = json.loads((export_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
        self.max_seq_length = settings["max_seq_length"]
        self.lower_case = settings["do_lower_case"]
        self.compiled = core.compile_model(core.read_model(str(export_dir / IR_FILE)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": self.precision,
                                            "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.input_names = settings["inputs"]
        self.dimension = int(self.encode(["dimension"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """One batch of texts -> (n, dim) float32 unit vectors."""
        if self.lower_case:
            texts = [text.lower() for text in texts]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length,
                               return_tensors="np")
        hidden = self.request.infer({name: batch[name].astype(np.int64) for name in self.input_names})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def verify(exported: OpenVINOEncoder, original: Callable[[], Callable[[list[str]], np.ndarray]],
           export_dir: Path) -> Verification:
    """Compare the exported model with the original on the fixed sample, once per precision and CPU (the result
    is kept in `export_dir`); `original()` loads the original's batch encoder only when a comparison is needed."""
    cpu = _cpu_name()
    record = export_dir / f"verification-{exported.precision}.json"
    if record.is_file():
        kept = Verification(**json.loads(record.read_text(encoding="utf-8")))
        if kept.cpu == cpu:
            return kept
    texts = sample_texts()
    encode_original = original()
    seconds_original, reference = _best_time(encode_original, texts)
    del encode_original
    release_freed_memory()  # the torch model loaded for the check (and for an export just made) is gone
    seconds_exported, vectors = _best_time(exported.encode, texts)
    cosines = (reference * vectors).sum(1)
    result = Verification(exported.precision, cpu, len(texts), float(cosines.min()), float(cosines.mean()),
                          seconds_original, seconds_exported)
    write_atomically(record, lambda temp: temp.write_text(json.dumps(asdict(result), indent=2) + "\n"))
    return result


def _best_time(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[float, np.ndarray]:
    """The faster of two timed runs after a warm-up, and the vectors."""
    vectors = encode(texts[:4])
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - started)
    return best, vectors


def _cpu_name() -> str:
    """The CPU model (a verification holds for the CPU it ran on: instruction sets decide the kernels)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
