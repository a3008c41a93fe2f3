"""The multi-process path (DDP, what several GPUs or nodes use) with two CPU processes under `accelerate launch`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(300)
def test_two_process_training_under_accelerate_launch(tiny_model, qa_file, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate is a dependency and installs the `accelerate` command"
    out = tmp_path / "ddp-run"
    recipe = tmp_path / "recipe.yaml"  # a timed checkpoint at every step: the processes must agree on each one
    recipe.write_text("checkpoint_minutes: 1.0e-9\n", encoding="utf-8")
    # --multi_gpu picks accelerate's torchrun launcher; without a GPU the processes join over gloo on the CPU.
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ragtune.cli", "finetune",
               "--train", str(qa_file), "--model", str(tiny_model), "--method", "lora", "--max-steps", "4",
               "--batch-size", "4", "--recipe", str(recipe), "--project", str(tmp_path / "project"), "--out", str(out), "--json"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes share the machine's cores
    completed = subprocess.run(command, capture_output=True, text=True, timeout=280, env=environment)
    assert completed.returncode == 0, completed.stderr[-3000:]

    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["status"] == "finished"
    assert metadata["world_size"] == 2 and metadata["steps"] == 4
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    printed = json.loads(completed.stdout)  # only the main process prints
    assert printed["run_dir"] == str(out)
