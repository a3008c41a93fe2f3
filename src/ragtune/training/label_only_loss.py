"""The training loss computed only where there are labels (chunked linear cross-entropy).

A causal LM's forward pass applies the output layer to every position and the loss then drops the prompt's
positions (label -100). For RAG and RAFT rows nearly the whole sequence is prompt, and SmolLM2's output layer
(576 × 49,152) with its float32 log-softmax is the largest single cost of a step and most of its memory
(BENCHMARKS.md). Here the decoder's hidden states are computed as before, the positions whose next token is a
label are selected, and only those go through the output layer and the cross-entropy, in chunks of
`CHUNK_TOKENS` whose logits are recomputed in the backward pass instead of being kept (the technique of fused or
chunked linear cross-entropy: Liger-Kernel, unsloth, Cut Cross-Entropy). Loss and gradients equal transformers'
`ForCausalLMLoss` to float tolerance, including the `num_items_in_batch` normalisation the Trainer uses for
gradient accumulation (tests/training/test_label_only_loss.py).

The same forward also drops an attention mask that only marks right padding (when no cache of earlier keys,
such as prefix tuning's, is given): a causal model's real tokens never attend to the padding after them, so such
a mask changes nothing but the attention kernel (it forces PyTorch's scaled-dot-product attention onto its
quadratic-memory path; without it the flash kernel runs, on CPU too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutputWithPast

from ragtune.data.encoding import IGNORE

# Logit rows per chunk: 256 × 49,152 vocabulary entries × (2 + 4 + 4 bytes: the bf16 logits, their float32 copy
# and its log-softmax) ≈ 120 MB at the peak, whatever the batch.
CHUNK_TOKENS = 256


def supports_label_only_loss(causal_lm) -> bool:
    """Whether `causal_lm` computes its logits as `lm_head(decoder(...))` with the standard causal-LM loss, which
    is what the label-only forward reproduces. Models that scale or soft-cap their logits keep their own forward."""
    config = causal_lm.config
    return (callable(getattr(causal_lm, "get_decoder", None))
            and isinstance(causal_lm.get_output_embeddings(), torch.nn.Linear)
            and getattr(config, "final_logit_softcapping", None) is None
            and getattr(config, "logit_scale", None) is None
            and not getattr(config, "is_encoder_decoder", False))


def use_label_only_loss(causal_lm) -> bool:
    """Replace the forward pass of `causal_lm` (before peft wraps it) by one that, when labels are given, returns
    only the loss computed on labelled positions; without labels (generation) the model's own forward runs.
    Returns False, changing nothing, for models `supports_label_only_loss` rules out."""
    if not supports_label_only_loss(causal_lm):
        return False
    full_forward = causal_lm.forward

    def forward(input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                num_items_in_batch=None, **kwargs):
        if labels is None:
            return full_forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                inputs_embeds=inputs_embeds, **kwargs)
        kwargs.pop("logits_to_keep", None)
        cached = kwargs.get("past_key_values") is not None or kwargs.get("cache") is not None  # prefix tuning
        if attention_mask is not None and not cached and only_right_padding(attention_mask):
            attention_mask = None
        hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                         position_ids=position_ids, inputs_embeds=inputs_embeds,
                                         **kwargs).last_hidden_state
        loss = label_only_cross_entropy(hidden, labels, causal_lm.get_output_embeddings(),
                                        num_items_in_batch=num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss)

    causal_lm.forward = forward
    return True


def only_right_padding(attention_mask: torch.Tensor) -> bool:
    """Whether every row of `attention_mask` is ones followed by zeros (a 2-D padding mask of right-padded rows)."""
    if attention_mask.dim() != 2:
        return False
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool(torch.equal(attention_mask.bool(), positions < attention_mask.sum(dim=1, keepdim=True)))


def label_only_cross_entropy(hidden: torch.Tensor, labels: torch.Tensor, output_layer: torch.nn.Linear, *,
                             num_items_in_batch: int | torch.Tensor | None = None,
                             chunk_tokens: int = CHUNK_TOKENS) -> torch.Tensor:
    """Next-token cross-entropy of `output_layer(hidden)` against `labels` (batch × sequence, IGNORE where not
    trained), computed on the labelled positions only: the sum divided by `num_items_in_batch` when given, else
    the mean over labelled tokens (as transformers' ForCausalLMLoss)."""
    targets = labels[:, 1:]
    trained = targets != IGNORE
    selected = hidden[:, :-1][trained]
    targets = targets[trained]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, selected.shape[0], chunk_tokens):
        rows, answers = selected[start:start + chunk_tokens], targets[start:start + chunk_tokens]
        if selected.shape[0] > chunk_tokens:  # keep only the chunk's hidden states for the backward pass
            total = total + checkpoint(_summed_cross_entropy, rows, answers, output_layer, use_reentrant=False)
        else:
            total = total + _summed_cross_entropy(rows, answers, output_layer)
    if num_items_in_batch is None:
        return total / targets.numel()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _summed_cross_entropy(rows: torch.Tensor, answers: torch.Tensor, output_layer: torch.nn.Linear) -> torch.Tensor:
    return F.cross_entropy(output_layer(rows).float(), answers, reduction="sum")
