"""One LoRA step of SmolLM2-135M on RAFT-like rows: the plain causal-LM forward against ragtune's label-only loss.

    python benchmarks/bench_training_step.py VARIANT BATCH LENGTH LABELLED [STEPS]

VARIANT: `full` (logits for every position and a padding mask: what a plain Trainer + peft script computes),
`label` (ragtune's label-only loss; the right-padding mask is dropped by it), `label-gc` (with gradient
checkpointing). Rows of BATCH of lengths LENGTH, LENGTH-37, ... (mod 120) tokens with their last LABELLED tokens
as labels, bf16 autocast, LoRA r 16 on every linear layer. Run each variant in its own process: the printed
peak RSS is that process's. Prints the fastest step after the first and the peak RSS as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from ragtune.training.checkpoint import trainable_checkpoint  # noqa: E402
from ragtune.training.label_only_loss import use_label_only_loss  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batch(size: int, length: int, labelled: int) -> dict:
    ids = torch.randint(0, 49152, (size, length), generator=torch.Generator().manual_seed(0))
    labels = torch.full((size, length), -100)
    mask = torch.zeros(size, length, dtype=torch.long)
    for row in range(size):
        end = length - (row * 37 % 120)
        mask[row, :end] = 1
        labels[row, end - labelled:end] = ids[row, end - labelled:end]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def main() -> None:
    variant, size, length, labelled = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    model = AutoModelForCausalLM.from_pretrained(trainable_checkpoint("smollm2-135m"), dtype=torch.float32)
    if variant.startswith("label"):
        use_label_only_loss(model)
    if variant.endswith("-gc"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32,
                                             target_modules=TARGETS))
    model.train()
    inputs = batch(size, length, labelled)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    print(json.dumps({"variant": variant, "batch": size, "real_tokens": int(inputs["attention_mask"].sum()),
                      "step_seconds": round(min(times[1:] or times), 2), "loss": float(loss),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
