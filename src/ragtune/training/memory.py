"""Training memory: an estimate measured on the model itself, the micro-batch plan chosen from it, and the peak.

The estimate adds to what the process holds once the model is loaded (its resident memory on CPU, allocated
memory on CUDA) the gradients and AdamW moments of the trainable parameters and the activations a micro-batch
keeps for the backward pass. Activations are not guessed from a formula: a short probe runs the model's forward
pass on rows of three lengths and counts the bytes of the tensors autograd saves (which depends on the method,
the precision and the attention kernel), then extrapolates to the longest training row. `plan_memory` then picks
the largest micro-batch whose estimate fits the budget, with gradient accumulation keeping the effective batch,
and gradient checkpointing only when a single row does not fit (on this CPU it cost ~1.7× a step's time, while
micro-batches of 2 rows ran as fast per token as 8, and single rows ~0.7×: BENCHMARKS.md).
"""

from __future__ import annotations

import re
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch

from ragtune.data.encoding import IGNORE
from ragtune.training.label_only_loss import CHUNK_TOKENS

GB = 1024 ** 3
# Gradient plus AdamW's two moments, float32, per trainable parameter.
OPTIMIZER_BYTES = 4 + 8
# Freed and transient memory the allocator holds on top of the saved activations during the backward pass (the
# gradients flowing through one layer, glibc arenas). Chosen on a 4-layer model (tests/training/test_memory.py);
# on SmolLM2-135M the estimate is within -17 %..+3 % of the measured peak for SFT, RAFT and CPT rows, full and LoRA
# (BENCHMARKS.md, benchmarks/bench_memory_estimate.py).
ACTIVATION_OVERHEAD = 1.25
# Default limit on what training adds on CPU (optimizer state and activations, beyond the process and the model
# already loaded), whatever more is free: the main job must fit an 8 GB laptop (its whole demo in 4 GB), and on a
# CPU micro-batches beyond a row or two of RAFT size buy little speed. At 1.6 GB the demo's RAFT run (rows of ~670
# tokens) takes one row per micro-batch: peak 3.74 GB instead of 4.37 at two rows, for 8 % more training time;
# short SFT rows keep micro-batches of 8 (BENCHMARKS.md).
CPU_LIMIT_GB = 1.6
# Share of the free memory (CPU RAM or GPU memory) training may plan to use.
FREE_SHARE = 0.8
PROBE_LENGTHS = (32, 64, 128)


@dataclass
class ActivationProfile:
    """Bytes autograd saves for one row of `length` tokens: constant + per_token·length + per_token²·length²."""

    constant: float
    per_token: float
    per_token_squared: float

    def row_bytes(self, length: int) -> float:
        return self.per_token * length + self.per_token_squared * length ** 2


@dataclass
class MemoryEstimate:
    baseline_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    available_gb: float
    device: str

    def to_dict(self) -> dict:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


@dataclass
class MemoryPlan:
    """How a run splits its batch to fit: micro-batches × accumulation = the recipe's rows per step."""

    micro_batch_size: int
    gradient_accumulation: int
    gradient_checkpointing: bool
    limit_gb: float
    estimate: MemoryEstimate
    fits: bool

    def warning(self) -> str | None:
        """A message with what to change when even the smallest plan may not fit, else None."""
        if self.fits:
            return None
        e = self.estimate
        smallest = "one row per micro-batch" + (" and gradient checkpointing" if self.gradient_checkpointing else "")
        return (f"training may need about {e.total_gb:.1f} GB (the model and this process {e.baseline_gb:.1f}, "
                f"gradients and optimizer {e.optimizer_gb:.1f}, activations {e.activations_gb:.1f}) with {smallest}: "
                f"training adds more than the {self.limit_gb:.1f} GB limit; lower --max-seq-length, use a "
                "parameter-efficient method such as lora, or raise memory_limit_gb")

    def to_dict(self) -> dict:
        return {"micro_batch_size": self.micro_batch_size, "gradient_accumulation": self.gradient_accumulation,
                "gradient_checkpointing": self.gradient_checkpointing, "limit_gb": round(self.limit_gb, 3),
                "fits": self.fits, "estimate": self.estimate.to_dict()}


def saved_activation_bytes(model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor, *, bf16: bool) -> int:
    """The bytes autograd saves for the backward pass of one training forward of `model` on `ids` (weights
    excluded), measured by watching what it saves."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            seen[storage.data_ptr()] = storage.nbytes()
        # Detached: the same storage (kept until the forward ends, so no address is counted twice) without its
        # grad_fn. Returning `tensor` itself makes a node that saves its own output hold that output's Python
        # object, a cycle through C++ the garbage collector never sees: the whole graph, the weights with it,
        # stayed resident (measured +1 GB per probe on SmolLM2-135M).
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        model(input_ids=ids, labels=labels)
    return sum(seen.values())


def profile_activations(model: torch.nn.Module, *, bf16: bool) -> ActivationProfile:
    """Measure the bytes autograd saves in a training forward pass of `model` on single rows of PROBE_LENGTHS
    tokens (labels on the last token only: the output layer's share is planned separately), and fit them. Runs
    where the model is (before the Trainer moves it): the bytes saved do not depend on the device."""
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    measured = []
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[]):
        for length in PROBE_LENGTHS:
            ids = (torch.arange(length, device=device) * 7919 % vocab).unsqueeze(0)
            labels = torch.full_like(ids, IGNORE)
            labels[0, -1] = ids[0, -1]
            measured.append(float(saved_activation_bytes(model, ids, labels, bf16=bf16)))
    model.train(was_training)
    lengths = torch.tensor(PROBE_LENGTHS, dtype=torch.float64)
    system = torch.stack([torch.ones_like(lengths), lengths, lengths ** 2], dim=1)
    constant, per_token, squared = torch.linalg.solve(system, torch.tensor(measured, dtype=torch.float64)).tolist()
    return ActivationProfile(max(constant, 0.0), max(per_token, 0.0), max(squared, 0.0))


def estimate_memory(model: torch.nn.Module, profile: ActivationProfile, *, micro_batch_size: int, seq_length: int,
                    gradient_checkpointing: bool, device: str = "cpu") -> MemoryEstimate:
    """Peak training memory of `model` (parameters already marked trainable or not) for micro-batches of
    `micro_batch_size` rows of up to `seq_length` tokens."""
    config = model.config
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = profile.row_bytes(seq_length)
    if gradient_checkpointing:  # each layer's input kept, one layer's activations rebuilt at a time
        layers = config.num_hidden_layers
        row = seq_length * config.hidden_size * 4 * layers + row / layers
    output = min(CHUNK_TOKENS, micro_batch_size * seq_length) * config.vocab_size * 10  # bf16, float32, log-softmax
    activations = (profile.constant + micro_batch_size * row) * ACTIVATION_OVERHEAD + output
    baseline_gb = current_memory_gb(device)
    if next(model.parameters()).device.type != device.split(":")[0]:  # the Trainer moves the weights there later
        baseline_gb += sum(p.numel() * p.element_size() for p in model.parameters()) / GB
    optimizer_gb = trainable * OPTIMIZER_BYTES / GB
    return MemoryEstimate(baseline_gb, optimizer_gb, activations / GB, baseline_gb + optimizer_gb + activations / GB,
                          available_gb(device), device)


def plan_memory(model: torch.nn.Module, profile: ActivationProfile, *, batch_size: int, gradient_accumulation: int,
                seq_length: int, gradient_checkpointing: bool, limit_gb: float | None, device: str = "cpu",
                checkpointing_possible: bool = True) -> MemoryPlan:
    """The largest micro-batch (a divisor of the effective batch `batch_size × gradient_accumulation`) whose
    training memory (optimizer state and activations, beyond what the process holds now) fits `limit_gb` (None:
    `default_limit_gb`); gradient checkpointing is added when one row does not fit without it (or kept when the
    recipe asks for it; never where `checkpointing_possible` is False)."""
    limit = limit_gb if limit_gb is not None else default_limit_gb(device)
    rows_per_step = batch_size * gradient_accumulation
    sizes = [size for size in range(min(batch_size, rows_per_step), 0, -1) if rows_per_step % size == 0]
    estimate = None
    choices = [True] if gradient_checkpointing else [False, True] if checkpointing_possible else [False]
    for checkpointing in choices:
        for size in sizes:
            estimate = estimate_memory(model, profile, micro_batch_size=size, seq_length=seq_length,
                                       gradient_checkpointing=checkpointing, device=device)
            if estimate.optimizer_gb + estimate.activations_gb <= limit:
                return MemoryPlan(size, rows_per_step // size, checkpointing, limit, estimate, True)
    return MemoryPlan(1, rows_per_step, checkpointing, limit, estimate, False)


def default_limit_gb(device: str) -> float:
    """What training may add when the recipe sets no memory_limit_gb: FREE_SHARE of the free memory, and on CPU
    at most CPU_LIMIT_GB."""
    free = FREE_SHARE * available_gb(device)
    return free if device.startswith("cuda") else min(free, CPU_LIMIT_GB)


def available_gb(device: str) -> float:
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info()
        return free / GB
    return psutil.virtual_memory().available / GB


def current_memory_gb(device: str = "cpu") -> float:
    """This process's memory now: resident set on CPU, allocated memory on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated() / GB
    return psutil.Process().memory_info().rss / GB


def reset_peak_memory(device: str = "cpu") -> None:
    """Start measuring the peak anew (Linux: the resident high-water mark, via /proc/self/clear_refs)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")


def peak_memory_gb(device: str = "cpu") -> float:
    """Peak memory since the last `reset_peak_memory` (or of the whole process where it cannot be reset):
    resident set size on CPU, allocated memory on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / GB
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if match:
            return int(match.group(1)) / 1024 ** 2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return peak / (GB if sys.platform == "darwin" else 1024 ** 2)
