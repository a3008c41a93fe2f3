"""The embedder's runtimes: the OpenVINO export, its check against the original, the fallback to torch, and a
knowledge base that never mixes vectors of two runtimes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ragtune.errors import RagtuneError
from ragtune.knowledge import embedder as embedder_module
from ragtune.knowledge import openvino_embedder
from ragtune.knowledge.embedder import Embedder
from ragtune.project import Project

from tiny_models import build_tiny_sentence_transformer

TEXTS = ["the cat sat on the mat", "mars is the fourth planet", "what is the capital of france?",
         "dogs were domesticated from wolves " * 30]


@pytest.fixture(scope="module")
def tiny_embedder_dir(tmp_path_factory):
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st") / "model")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_export_is_checked_against_the_original_and_reused(tiny_embedder_dir, cache, monkeypatch):
    fast = Embedder(str(tiny_embedder_dir), runtime="openvino")
    plain = Embedder(str(tiny_embedder_dir), runtime="torch")
    assert (fast.runtime, plain.runtime) == ("openvino", "torch")
    cosines = (fast.encode(TEXTS) * plain.encode(TEXTS)).sum(1)
    assert cosines.min() > openvino_embedder.MIN_COSINE
    assert fast.dimension == plain.dimension and fast.max_tokens == plain.max_tokens
    assert fast.tokenizer.encode(TEXTS[3]).ids == plain.tokenizer.encode(TEXTS[3]).ids
    verification = fast.encoder.verification
    assert verification.accurate and verification.texts == len(openvino_embedder.sample_texts())
    assert "min cosine" in fast.describe()["verification"]

    (export_dir,) = (cache / "embedders").iterdir()
    assert {p.name for p in export_dir.iterdir()} >= {"model.xml", "model.bin", f"verification-{fast.encoder.precision}.json"}
    assert not list(tiny_embedder_dir.glob("*.xml"))  # nothing written into the model's own folder
    written = (export_dir / "model.bin").stat().st_mtime_ns

    def no_torch(name):
        raise AssertionError("the kept verification should spare loading the original")

    monkeypatch.setattr(embedder_module, "open_sentence_transformer", no_torch)
    again = Embedder(str(tiny_embedder_dir), runtime="auto")
    assert again.runtime == "openvino" or "speed" in again.fallback_reason
    assert (export_dir / "model.bin").stat().st_mtime_ns == written
    if again.runtime == "openvino":  # the same export gives the same vectors
        np.testing.assert_allclose(again.encode(TEXTS[:2]), fast.encode(TEXTS[:2]), atol=1e-6)
    else:  # slower than torch on a busy machine: torch's vectors, within the verified cosine
        assert (again.encode(TEXTS[:2]) * fast.encode(TEXTS[:2])).sum(1).min() > openvino_embedder.MIN_COSINE


def test_a_failed_check_falls_back_to_torch_and_an_explicit_openvino_is_refused(tiny_embedder_dir, cache,
                                                                                 monkeypatch):
    monkeypatch.setattr(openvino_embedder, "MIN_COSINE", 1.01)  # no export can pass
    embedder = Embedder(str(tiny_embedder_dir))
    assert embedder.runtime == "torch" and "failed its check" in embedder.fallback_reason
    with pytest.raises(RagtuneError, match="cannot run through OpenVINO here") as error:
        Embedder(str(tiny_embedder_dir), runtime="openvino")
    assert "embedder_runtime: torch" in error.value.hint


def test_unsupported_models_and_a_missing_openvino_fall_back(tmp_path, cache, monkeypatch, tiny_embedder_dir):
    cls_pooled = build_tiny_sentence_transformer(tmp_path / "cls", pooling="cls")
    embedder = Embedder(str(cls_pooled))
    assert embedder.runtime == "torch" and "mean pooling" in embedder.fallback_reason
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    embedder = Embedder(str(tiny_embedder_dir))
    assert embedder.runtime == "torch" and "openvino" in embedder.fallback_reason.lower()
    assert not (cache / "embedders").exists() or not list((cache / "embedders").iterdir())


def test_a_knowledge_base_keeps_the_runtime_it_was_embedded_with(tmp_path, corpus, tiny_embedder_dir, cache):
    models = {"embedder": str(tiny_embedder_dir)}
    with_openvino = Project(tmp_path / "project", {"models": {**models, "embedder_runtime": "openvino"}})
    with_openvino.ingest([str(corpus)])
    assert with_openvino.status()["models"]["embedder_runtime"] == "openvino"
    with_openvino.close()

    on_auto = Project(tmp_path / "project", {"models": models})
    assert on_auto.kb.embedder.runtime == "openvino" and on_auto.search("mars volcano", k=1)
    on_auto.close()
    on_torch = Project(tmp_path / "project", {"models": {**models, "embedder_runtime": "torch"}})
    with pytest.raises(RagtuneError, match="embedded through the openvino runtime") as error:
        on_torch.search("mars volcano", k=1)
    assert "embedder_runtime: auto" in error.value.hint and "ingest again" in error.value.hint
    on_torch.close()


def test_a_knowledge_base_from_before_runtimes_were_recorded_stays_on_torch(tmp_path, corpus, tiny_embedder_dir, cache):
    models = {"embedder": str(tiny_embedder_dir), "embedder_runtime": "torch"}
    project = Project(tmp_path / "project", {"models": models})
    project.ingest([str(corpus)])
    project.kb.store.set_meta("embedder_runtime", "")  # as written by earlier versions: no runtime recorded
    project.close()
    reopened = Project(tmp_path / "project", {"models": {"embedder": str(tiny_embedder_dir)}})
    assert reopened.kb.embedder.runtime == "torch" and reopened.status()["models"]["embedder_runtime"] == "torch"
    reopened.close()
