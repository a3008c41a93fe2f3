"""Trainer callbacks: a Rich progress bar (loss, tokens/s, ETA), a JSONL log of every logged value, the session
clock, and checkpoints by elapsed time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate import PartialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

from ragtune.errors import RagtuneError


class RichProgressCallback(TrainerCallback):
    """One bar over the optimizer steps, showing the latest training and validation loss and tokens/s."""

    def __init__(self, console: Console):
        self.console = console
        self._progress: Progress | None = None
        self._task = None
        self._started = 0.0
        self._tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  "
                                             "{task.fields[rate]} tok/s"),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                             loss="-", val="-", rate="-")
        self._started = time.perf_counter()
        self._tokens_at_start = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        rate = (state.num_input_tokens_seen - self._tokens_at_start) / elapsed
        self._progress.update(self._task, completed=state.global_step, rate=f"{rate:,.0f}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is None or not logs:
            return
        if "loss" in logs:
            self._progress.update(self._task, loss=f"{logs['loss']:.4f}")
        if "eval_loss" in logs:
            self._progress.update(self._task, val=f"{logs['eval_loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class JsonlLogCallback(TrainerCallback):
    """Append every log event (step, epoch, tokens seen, values) as one JSON line."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "tokens_seen": state.num_input_tokens_seen,
                  "time": time.time(), **logs}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict]:
    """The records a JsonlLogCallback wrote (empty when the file does not exist)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise RagtuneError(f"{path}:{number} is not a JSON record", "restore the log or delete the run")
            # the last line, cut short by a crash while it was written: the resumed run logs that step again
    return records


class SessionClockCallback(TrainerCallback):
    """Keep one line per training session (a run plus each resume) with its wall time up to the latest
    checkpoint, so a killed session's useful time still counts in the run's total."""

    def __init__(self, path: Path, resumed_from: str | None):
        self.path = path
        self.resumed_from = resumed_from
        self._started = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()
        if state.is_world_process_zero:
            self._write(append=True)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(append=False)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(append=False)

    def _write(self, *, append: bool) -> None:
        sessions = read_log(self.path)
        record = {"seconds": round(time.perf_counter() - self._started, 3), "resumed_from": self.resumed_from}
        sessions = sessions + [record] if append or not sessions else sessions[:-1] + [record]
        self.path.write_text("".join(json.dumps(s) + "\n" for s in sessions), encoding="utf-8")


class ProgressTaskCallback(TrainerCallback):
    """Report optimizer steps to a ragtune ProgressReporter (for commands that show several stages at once)."""

    def __init__(self, progress, description: str):
        self.progress = progress
        self.description = description
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._task = self.progress.task(self.description, total=state.max_steps)
            self._task.advance(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self._task is not None:
            self._task.advance()


class TimedCheckpointCallback(TrainerCallback):
    """Checkpoint (weights, optimizer, scheduler and RNG state) once `minutes` have passed since the last one, so
    a killed run loses at most that much work and a short run pays for no checkpoint at all. In a multi-process
    run the main process's clock decides for every process (they must save together)."""

    def __init__(self, minutes: float, clock=time.monotonic):
        self.seconds = minutes * 60
        self.clock = clock
        self._last_save = clock()

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_save = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step < state.max_steps and self._due():
            control.should_save = True  # the finished run's weights are saved anyway: no checkpoint at the end
        return control

    def on_save(self, args, state, control, **kwargs):
        self._last_save = self.clock()

    def _due(self) -> bool:
        due = self.clock() - self._last_save >= self.seconds
        process = PartialState()
        if process.num_processes == 1:
            return due
        flag = torch.tensor([int(due)], device=process.device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())
