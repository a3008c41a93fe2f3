"""Model-side settings for training."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from ragtune.training.trainer_setup import return_only_the_loss_in_training


def test_training_forward_returns_the_loss_alone_evaluation_keeps_the_logits(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    model.eval()
    expected = model(input_ids=ids, labels=ids)
    return_only_the_loss_in_training(model)

    model.train()
    trained = model(input_ids=ids, labels=ids)
    assert trained.logits is None and torch.equal(trained.loss, expected.loss)  # tiny model: no dropout
    assert model(input_ids=ids).logits is not None, "without labels (generation) the logits stay"
    model.eval()
    evaluated = model(input_ids=ids, labels=ids)
    assert torch.equal(evaluated.logits, expected.logits) and torch.equal(evaluated.loss, expected.loss)
