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
from ragtune.progress import LINE_EVERY_SECONDS, format_duration


class RichProgressCallback(TrainerCallback):
    """One bar over the optimizer steps, showing the latest training and validation loss and tokens/s; when the
    console is not a terminal (a log, CI), the same as a line at most every `every_seconds` and at the end."""

    def __init__(self, console: Console, every_seconds: float = LINE_EVERY_SECONDS):
        self.console, self.every_seconds = console, every_seconds
        self._progress: Progress | None = None
        self._task = None
        self._fields = {"loss": "-", "val": "-", "rate": "-"}
        self._active = False
        self._started = self._last_line = 0.0
        self._first_step = self._tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._active = True
        self._started = self._last_line = time.perf_counter()
        self._first_step, self._tokens_at_start = state.global_step, state.num_input_tokens_seen
        if not self.console.is_terminal:
            return
        self._progress = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("loss {task.fields[loss]}  val {task.fields[val]}  "
                                             "{task.fields[rate]} tok/s"),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=self.console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                             **self._fields)

    def on_step_end(self, args, state, control, **kwargs):
        if not self._active:
            return
        now = time.perf_counter()
        elapsed = max(now - self._started, 1e-9)
        self._fields["rate"] = f"{(state.num_input_tokens_seen - self._tokens_at_start) / elapsed:,.0f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, rate=self._fields["rate"])
        elif now - self._last_line >= self.every_seconds:
            self._last_line = now
            self._print_line(state, elapsed)

    def _print_line(self, state, elapsed: float) -> None:
        step, total = state.global_step, state.max_steps
        line = (f"training: step {step}/{total} ({step / max(total, 1):.0%}), loss {self._fields['loss']}, "
                f"val {self._fields['val']}, {self._fields['rate']} tok/s, {format_duration(elapsed)} elapsed")
        if self._first_step < step < total:
            line += f", ETA {format_duration((total - step) * elapsed / (step - self._first_step))}"
        self.console.print(line, markup=False, highlight=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._active or not logs:
            return
        if "loss" in logs:
            self._fields["loss"] = f"{logs['loss']:.4f}"
        if "eval_loss" in logs:
            self._fields["val"] = f"{logs['eval_loss']:.4f}"
        if self._progress is not None:
            self._progress.update(self._task, **self._fields)

    def on_train_end(self, args, state, control, **kwargs):
        """The bar's end, or the last line: the Trainer logs a step's loss after its `on_step_end`."""
        if self._active and self._progress is None:
            self._print_line(state, time.perf_counter() - self._started)
        self._active = False
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
