"""Memory: an estimate before training (to warn about out-of-memory risk) and the peak measured after."""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass

import psutil
import torch

# Bytes per trainable parameter beyond its weight: its gradient plus AdamW's two moments, all float32.
_OPTIMIZER_BYTES = 4 + 8
# Activation bytes kept per token per layer for the backward pass, as a multiple of the hidden size
# (Korthikanti et al. 2022, "Reducing Activation Recomputation": about 34·h in 16-bit without recomputation).
_ACTIVATION_FACTOR = 34
# Logits, their log-softmax and its gradient, float32, per token per vocabulary entry.
_LOGIT_BYTES = 3 * 4


@dataclass
class MemoryEstimate:
    weights_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    available_gb: float
    device: str

    @property
    def at_risk(self) -> bool:
        return self.total_gb > 0.8 * self.available_gb

    def warning(self) -> str | None:
        """A message with what to change when the run may not fit, else None."""
        if not self.at_risk:
            return None
        return (f"training may need about {self.total_gb:.1f} GB but only {self.available_gb:.1f} GB is free on "
                f"{self.device} (weights {self.weights_gb:.1f}, gradients and optimizer {self.optimizer_gb:.1f}, "
                f"activations {self.activations_gb:.1f}); lower --batch-size or --max-seq-length, enable "
                "gradient_checkpointing, or use a parameter-efficient method such as lora")

    def to_dict(self) -> dict:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def estimate_memory(model: torch.nn.Module, *, batch_size: int, seq_length: int, bf16: bool,
                    gradient_checkpointing: bool, device: str = "cpu") -> MemoryEstimate:
    """Estimate peak training memory of `model` (parameters already marked trainable or not)."""
    config = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    activation_bytes_per_value = 2 if bf16 else 4
    layers = 1 if gradient_checkpointing else config.num_hidden_layers
    tokens = batch_size * seq_length
    activations = tokens * layers * config.hidden_size * _ACTIVATION_FACTOR * activation_bytes_per_value / 2
    logits = tokens * config.vocab_size * _LOGIT_BYTES
    gb = 1024 ** 3
    weights_gb = weight_bytes / gb
    optimizer_gb = trainable * _OPTIMIZER_BYTES / gb
    activations_gb = (activations + logits) / gb
    return MemoryEstimate(weights_gb, optimizer_gb, activations_gb, weights_gb + optimizer_gb + activations_gb,
                          _available_gb(device), device)


def _available_gb(device: str) -> float:
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info()
        return free / 1024 ** 3
    return psutil.virtual_memory().available / 1024 ** 3


def peak_memory_gb(device: str = "cpu") -> float:
    """Peak memory of this process so far: resident set size on CPU, allocated memory on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return peak / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)
