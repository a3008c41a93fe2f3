"""The label-only loss equals transformers' full-logits loss: values and gradients, padded, packed, chunked."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from ragtune.data import TrainingCollator, pack_sequences
from ragtune.data.encoding import IGNORE
from ragtune.training.label_only_loss import label_only_cross_entropy, use_label_only_loss


def rows(count: int, seed: int = 0) -> list[dict]:
    """Rows of varied length whose labels cover only the last few tokens (a prompt, then an answer)."""
    generator = torch.Generator().manual_seed(seed)
    made = []
    for i in range(count):
        length = 6 + 3 * i
        ids = torch.randint(3, 300, (length,), generator=generator).tolist()
        answer = 2 + i % 3
        made.append({"input_ids": ids, "labels": [IGNORE] * (length - answer) + ids[length - answer:]})
    return made


def loss_and_gradients(model, batch: dict, **loss_kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**batch, **loss_kwargs).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same(full, label_only):
    (full_loss, full_grads), (loss, grads) = full, label_only
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == full_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture
def models(tiny_model):
    full = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    label_only = copy.deepcopy(full)
    assert use_label_only_loss(label_only)
    return full, label_only


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("normalised_by_batch", [False, True], ids=["mean", "num_items_in_batch"])
def test_label_only_loss_and_gradients_equal_the_full_loss(models, packed, normalised_by_batch):
    full, label_only = models
    encoded = rows(6)
    batch = TrainingCollator(pad_token_id=0)(pack_sequences(encoded, 40, seed=0) if packed else encoded)
    batch.pop("use_cache", None)
    kwargs = {"num_items_in_batch": torch.tensor(50)} if normalised_by_batch else {}
    assert_same(loss_and_gradients(full, batch, **kwargs), loss_and_gradients(label_only, batch, **kwargs))


def test_a_right_padding_mask_is_dropped_a_left_padding_one_kept(models):
    from ragtune.training.label_only_loss import only_right_padding

    assert only_right_padding(torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert not only_right_padding(torch.tensor([[1, 1, 1], [0, 1, 1]]))
    assert not only_right_padding(torch.tensor([[1, 0, 1]]))
    full, label_only = models
    left = {"input_ids": torch.tensor([[0, 0, 7, 8, 9], [4, 5, 6, 7, 8]]),
            "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),
            "labels": torch.tensor([[IGNORE, IGNORE, IGNORE, 8, 9], [IGNORE, IGNORE, IGNORE, 7, 8]])}
    assert_same(loss_and_gradients(full, left), loss_and_gradients(label_only, left))


def test_chunks_with_recomputation_give_the_same_loss_and_gradients(models):
    full, _ = models
    batch = TrainingCollator(pad_token_id=0)(rows(6))
    hidden = full.get_decoder()(input_ids=batch["input_ids"]).last_hidden_state.detach()
    results = []
    for chunk_tokens in (1000, 4, 1):  # one chunk; several, recomputed in the backward pass; one token each
        states = hidden.clone().requires_grad_()
        full.zero_grad()
        loss = label_only_cross_entropy(states, batch["labels"], full.lm_head, chunk_tokens=chunk_tokens)
        loss.backward()
        results.append((loss.detach(), {"hidden": states.grad, "lm_head": full.lm_head.weight.grad.clone()}))
    for other in results[1:]:
        assert_same(results[0], other)


def test_with_lora_on_top_the_gradients_of_the_adapter_are_unchanged(models):
    from peft import LoraConfig, get_peft_model

    full, label_only = models
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    full = get_peft_model(full, config)
    torch.manual_seed(1)
    label_only = get_peft_model(label_only, config)
    batch = TrainingCollator(pad_token_id=0)(rows(4))
    assert_same(loss_and_gradients(full, batch), loss_and_gradients(label_only, batch))


def test_without_labels_the_model_forward_is_untouched(models):
    full, label_only = models
    ids = torch.tensor([[5, 9, 13, 2]])
    torch.testing.assert_close(label_only(input_ids=ids).logits, full(input_ids=ids).logits)
    assert label_only(input_ids=ids, labels=ids).logits is None  # training and validation read the loss alone
