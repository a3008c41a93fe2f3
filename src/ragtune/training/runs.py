"""Run directories: where a fine-tuning run keeps its recipe, data, logs, checkpoints and results.

A run trains in `NAME.partial/` and is renamed to `NAME/` only once everything is written, so a directory
without the suffix is always a finished run; a `.partial` one is resumable with `ragtune finetune --resume`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.errors import RagtuneError

PARTIAL_SUFFIX = ".partial"
METADATA_FILE = "metadata.json"
RECIPE_FILE = "recipe.yaml"
DATA_DIR = "data"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
CURVES_FILE = "curves.png"
ADAPTER_GGUF = "adapter.gguf"
MODEL_GGUF = "model.gguf"


def new_run_name(method: str, objective: str) -> str:
    """A sortable, readable name such as 20261124-101500-lora-sft."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{objective}"


def unused_run_dir(runs_dir: Path, name: str) -> Path:
    """`runs_dir/name`, or `name-2`, `name-3`, ... when a run (finished or not) already has that name."""
    candidate, number = runs_dir / name, 1
    while candidate.exists() or partial_dir(candidate).exists():
        number += 1
        candidate = runs_dir / f"{name}-{number}"
    return candidate


def partial_dir(final_dir: Path) -> Path:
    """The directory a run trains in before it is finished."""
    return final_dir.with_name(final_dir.name + PARTIAL_SUFFIX)


def final_dir(work_dir: Path) -> Path:
    """The finished name of a (possibly partial) run directory."""
    name = work_dir.name
    return work_dir.with_name(name[: -len(PARTIAL_SUFFIX)]) if name.endswith(PARTIAL_SUFFIX) else work_dir


def is_finished_run(path: Path) -> bool:
    """True for a directory holding a finished run."""
    metadata = path / METADATA_FILE
    return metadata.is_file() and json.loads(metadata.read_text(encoding="utf-8")).get("status") == "finished"


def read_metadata(run_dir: Path) -> dict:
    """The metadata of a finished run, or a clear error for anything else."""
    if not is_finished_run(run_dir):
        if partial_dir(run_dir).is_dir() or run_dir.name.endswith(PARTIAL_SUFFIX):
            raise RagtuneError(f"{run_dir} is an unfinished fine-tuning run",
                               "finish it with `ragtune finetune --resume`, or delete the .partial directory")
        raise RagtuneError(f"{run_dir} is not a finished fine-tuning run (no {METADATA_FILE} with status finished)",
                           "pass a directory printed by `ragtune finetune`")
    return json.loads((run_dir / METADATA_FILE).read_text(encoding="utf-8"))


def update_metadata(run_dir: Path, **values) -> None:
    """Add `values` to a finished run's metadata."""
    path = run_dir / METADATA_FILE
    metadata = json.loads(path.read_text(encoding="utf-8"))
    write_bytes_atomically(path, json.dumps({**metadata, **values}, indent=2, default=str).encode("utf-8"))


def latest_partial_run(runs_dir: Path) -> Path:
    """The most recent unfinished run under `runs_dir` (names sort by start time)."""
    candidates = sorted(p for p in runs_dir.glob(f"*{PARTIAL_SUFFIX}") if (p / RECIPE_FILE).is_file())
    if not candidates:
        raise RagtuneError(f"no unfinished run to resume under {runs_dir}",
                           "start one with `ragtune finetune --train FILE`, or pass --out RUN_DIR")
    return candidates[-1]


def finish_run(work_dir: Path, metadata: dict) -> Path:
    """Write the finished metadata (atomically: from then on the run is finished, and a crash before the move
    only leaves `complete_finish` to do), drop the checkpoints and give the run its final name."""
    destination = final_dir(work_dir)
    if destination != work_dir and destination.exists():
        raise RagtuneError(f"{destination} already exists; the finished run stays in {work_dir}",
                           "move or delete the old directory, then rename the .partial one")
    metadata = {**metadata, "status": "finished", "run_dir": str(destination)}
    write_bytes_atomically(work_dir / METADATA_FILE, json.dumps(metadata, indent=2, default=str).encode("utf-8"))
    return complete_finish(work_dir)


def complete_finish(work_dir: Path) -> Path:
    """Drop the checkpoints of a run whose finished metadata is written and give it its final name."""
    shutil.rmtree(work_dir / CHECKPOINTS_DIR, ignore_errors=True)
    destination = final_dir(work_dir)
    if destination != work_dir:
        work_dir.rename(destination)
    return destination
