"""Training memory: the measured activation profile, the micro-batch plan, and the estimate against the peak."""

from __future__ import annotations

import gc
import random
import weakref

import pytest
import torch
from transformers import AutoModelForCausalLM

from ragtune.data import parse_dataset_spec
from ragtune.training import finetune as finetune_module
from ragtune.training import memory
from ragtune.training.finetune import finetune
from ragtune.training.label_only_loss import use_label_only_loss
from ragtune.training.recipe import resolve_recipe

from .conftest import qa_rows, write_jsonl
from tiny_models import build_tiny_llama


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """Wide enough that activations, not the interpreter, dominate a training step's memory."""
    return build_tiny_llama(tmp_path_factory.mktemp("wide-llama"), layers=4, hidden=256)


def test_the_profile_from_short_probes_predicts_a_long_batch(wide_model):
    model = AutoModelForCausalLM.from_pretrained(wide_model)
    use_label_only_loss(model)
    model.train()
    profile = memory.profile_activations(model, bf16=False)
    ids = torch.randint(3, 300, (4, 400), generator=torch.Generator().manual_seed(0))
    predicted = profile.constant + 4 * profile.row_bytes(400)
    labels = torch.full_like(ids, -100)
    labels[:, -1] = ids[:, -1]
    assert predicted == pytest.approx(memory.saved_activation_bytes(model, ids, labels, bf16=False), rel=0.1)


def test_the_probe_leaves_nothing_behind(wide_model):
    """Nothing of the probe's graph survives it: the weights go when the model goes (a saved output holding its own
    node kept the whole graph, weights included, out of the garbage collector's sight)."""
    model = AutoModelForCausalLM.from_pretrained(wide_model)
    use_label_only_loss(model)
    weight = weakref.ref(model.get_output_embeddings().weight)
    memory.profile_activations(model, bf16=False)
    del model
    gc.collect()
    assert weight() is None


def test_the_plan_keeps_the_effective_batch_and_shrinks_the_micro_batch_to_fit(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    profile = memory.ActivationProfile(constant=0, per_token=2 ** 20, per_token_squared=0)  # 1 MB per token
    plan = lambda limit, **kw: memory.plan_memory(model, profile, batch_size=8, gradient_accumulation=2,
                                                  seq_length=256, gradient_checkpointing=False, limit_gb=limit, **kw)
    roomy, tight = plan(100), plan(0.9)
    assert (roomy.micro_batch_size, roomy.gradient_accumulation, roomy.gradient_checkpointing) == (8, 2, False)
    assert tight.micro_batch_size * tight.gradient_accumulation == 16 and tight.micro_batch_size < 8
    assert tight.fits and tight.estimate.activations_gb <= 0.9 and not tight.gradient_checkpointing
    hopeless = plan(0.01)
    assert not hopeless.fits and hopeless.gradient_checkpointing and hopeless.micro_batch_size == 1
    assert "memory_limit_gb" in hopeless.warning() and roomy.warning() is None
    prefix = plan(0.01, checkpointing_possible=False)
    assert not prefix.fits and not prefix.gradient_checkpointing and "checkpointing" not in prefix.warning()


def test_prefix_tuning_refuses_gradient_checkpointing(tiny_model, tmp_path):
    from ragtune.errors import RagtuneError

    data = [parse_dataset_spec(str(write_jsonl(tmp_path / "qa.jsonl", qa_rows(10))))]
    recipe = resolve_recipe("prefix", overrides={"model": str(tiny_model), "gradient_checkpointing": True})
    with pytest.raises(RagtuneError, match="set gradient_checkpointing: false"):
        finetune(data, recipe, runs_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_micro_batches_keep_the_loss_curve(tiny_model, tmp_path, monkeypatch):
    data = [parse_dataset_spec(str(write_jsonl(tmp_path / "qa.jsonl", qa_rows(40))))]
    recipe = resolve_recipe("lora", overrides={"model": str(tiny_model), "max_steps": 4, "batch_size": 8,
                                               "lora_rank": 4, "memory_limit_gb": 64, "data": {"val_fraction": 0.0}})
    whole = finetune(data, recipe, runs_dir=tmp_path / "whole").metadata
    real_plan = finetune_module.plan_memory

    def four_micro_batches(*args, **kwargs):
        chosen = real_plan(*args, **kwargs)
        chosen.micro_batch_size, chosen.gradient_accumulation = 2, 4
        return chosen

    monkeypatch.setattr(finetune_module, "plan_memory", four_micro_batches)
    split = finetune(data, recipe, runs_dir=tmp_path / "split").metadata
    assert whole["memory"]["micro_batch_size"] == 8 and split["memory"]["gradient_accumulation"] == 4
    assert split["steps"] == whole["steps"] == 4 and split["tokens_seen"] == whole["tokens_seen"]
    losses = lambda meta: [meta["first_train_loss"], meta["last_train_loss"]]
    assert losses(split) == pytest.approx(losses(whole), rel=1e-4)


def test_the_estimate_is_within_a_quarter_of_the_measured_peak(wide_model, tmp_path):
    words = "red blue green black white pink box colour note what is".split()
    rows = [{"question": " ".join(random.Random(i).choices(words, k=110)) + "?", "answer": f"number {i}"}
            for i in range(16)]
    data = [parse_dataset_spec(str(write_jsonl(tmp_path / "long.jsonl", rows)))]
    recipe = resolve_recipe("full", overrides={"model": str(wide_model), "max_steps": 2, "batch_size": 8,
                                               "data": {"val_fraction": 0.0, "max_seq_length": 512}})
    metadata = finetune(data, recipe, runs_dir=tmp_path / "runs").metadata
    estimate = metadata["memory"]["estimate"]["total_gb"]
    assert metadata["peak_memory_gb"] == pytest.approx(estimate, rel=0.25)
