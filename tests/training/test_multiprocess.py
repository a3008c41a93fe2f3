"""The multi-process path (DDP, what several GPUs or nodes use) with two CPU processes under `accelerate launch`:
they train one model together, equal to one process with the same global batch, each on its own share of rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# Loaded at start-up by each training process (sitecustomize): records, per process and collated batch, a digest
# of every row it trains on, so that the test sees which rows each rank saw.
ROW_TRACER = '''
import hashlib, json, os
from ragtune.data import encoding

_collate = encoding.TrainingCollator.__call__

def _traced(self, features):
    digests = [hashlib.sha1(json.dumps(list(f["input_ids"])).encode()).hexdigest()[:16] for f in features]
    with open(os.path.join(os.environ["ROW_TRACE_DIR"], "rank%s.jsonl" % os.environ.get("RANK", "0")), "a") as out:
        out.write(json.dumps(digests) + "\\n")
    return _collate(self, features)

encoding.TrainingCollator.__call__ = _traced
'''


def traced_environment(tmp_path: Path, name: str) -> tuple[dict, Path]:
    hooks, trace = tmp_path / f"hooks-{name}", tmp_path / f"trace-{name}"
    hooks.mkdir()
    trace.mkdir()
    (hooks / "sitecustomize.py").write_text(ROW_TRACER, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "ROW_TRACE_DIR": str(trace)}, trace


def batches(trace: Path, rank: int) -> list[list[str]]:
    return [json.loads(line) for line in (trace / f"rank{rank}.jsonl").read_text().splitlines()]


@pytest.mark.timeout(400)
def test_two_processes_train_the_model_one_process_trains_with_the_same_global_batch(tiny_model, qa_file,
                                                                                      tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency and installs the `accelerate` command"
    recipe = tmp_path / "recipe.yaml"  # no validation rows: all rows train; a timed checkpoint at every step
    recipe.write_text("checkpoint_minutes: 1.0e-9\nwarmup: 0\nprecision: fp32\ndata:\n  val_fraction: 0.0\n",
                      encoding="utf-8")  # fp32: bf16 rounds differently for 8 rows than for 4
    finetune = ["finetune", "--train", str(qa_file), "--model", str(tiny_model), "--method", "lora",
                "--max-steps", "4", "--recipe", str(recipe), "--project", str(tmp_path / "project"), "--json"]

    single_env, single_trace = traced_environment(tmp_path, "single")
    single = subprocess.run([sys.executable, "-m", "ragtune.cli", *finetune, "--batch-size", "8",
                             "--out", str(tmp_path / "single")], capture_output=True, text=True, timeout=200,
                            env=single_env)
    assert single.returncode == 0, single.stderr[-3000:]

    ddp_env, ddp_trace = traced_environment(tmp_path, "ddp")
    out = tmp_path / "ddp-run"
    # --multi_gpu picks accelerate's torchrun launcher; without a GPU the processes join over gloo on the CPU.
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ragtune.cli", *finetune,
               "--batch-size", "4", "--out", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=280, env=ddp_env)
    assert completed.returncode == 0, completed.stderr[-3000:]

    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["status"] == "finished" and metadata["world_size"] == 2 and metadata["steps"] == 4
    assert json.loads(completed.stdout)["run_dir"] == str(out)  # only the main process prints

    # the data loader collates one batch ahead: the first four are the four steps'
    rank0, rank1, alone = batches(ddp_trace, 0)[:4], batches(ddp_trace, 1)[:4], batches(single_trace, 0)[:4]
    assert len(rank0) == len(rank1) == len(alone) == 4
    for step, (first, second, whole) in enumerate(zip(rank0, rank1, alone)):
        assert not set(first) & set(second), f"step {step}: both ranks trained on the same rows"
        assert sorted(first + second) == sorted(whole), f"step {step}: not the global batch of one process"

    together = load_file(out / "adapter" / "adapter_model.safetensors")
    reference = load_file(tmp_path / "single" / "adapter" / "adapter_model.safetensors")
    assert together.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(together[name], reference[name], rtol=0, atol=1e-5, msg=name)
