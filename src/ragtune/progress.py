"""Progress reporting for long work: items done, rate and ETA (Rich bars in a terminal, a line now and then in a log,
silent in the API)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Protocol

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class ProgressTask(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def add_total(self, n: int) -> None: ...


class ProgressReporter(Protocol):
    def task(self, description: str, total: int = 0) -> ProgressTask:
        """Start a task whose total may grow as work is discovered."""
        ...


class _SilentTask:
    def advance(self, n: int = 1) -> None:
        pass

    def add_total(self, n: int) -> None:
        pass


class SilentProgress:
    """Reports nothing (library use, tests, `--json`)."""

    def task(self, description: str, total: int = 0) -> ProgressTask:
        return _SilentTask()


def format_rate(per_second: float) -> str:
    """Items per second, or seconds per item for slow work (a training step: "34.5 s each", not "0.0/s")."""
    return f"{per_second:,.1f}/s" if per_second >= 1 else f"{1 / per_second:,.1f} s each"


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(format_rate(task.speed) if task.speed else "", style="progress.data.speed")


class _RichTask:
    def __init__(self, progress: Progress, task_id):
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)

    def add_total(self, n: int) -> None:
        task = self.progress.tasks[self.task_id]
        self.progress.update(self.task_id, total=(task.total or 0) + n)


class RichProgress:
    """Progress bars on stderr with counts, rate and ETA."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def task(self, description: str, total: int = 0) -> ProgressTask:
        return _RichTask(self.progress, self.progress.add_task(description, total=total or None))


LINE_EVERY_SECONDS = 30.0  # how often a log (output that is not a terminal) gets a progress line


class _LineTask:
    def __init__(self, reporter: "LineProgress", description: str, total: int):
        self.reporter, self.description, self.total, self.done, self.shown_done = reporter, description, total, 0, 0
        self.started = self.last_shown = self.last_advanced = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.last_advanced = time.monotonic()
        if self.last_advanced - self.last_shown >= self.reporter.every_seconds:
            self.show()

    def show(self) -> None:
        """A line with the count, the rate and the time up to the last advance (a task that ended long before
        the block did is not shown as slower)."""
        self.last_shown = time.monotonic()
        self.shown_done = self.done
        self.reporter.show(self, self.last_advanced - self.started)

    def add_total(self, n: int) -> None:
        self.total += n


class LineProgress:
    """Progress as plain lines, for output that is not a terminal (a log file, CI, `nohup`), where bars would only be
    drawn at the end: each task's count, rate and ETA at most every `every_seconds`, and where it ended (`finish`)."""

    def __init__(self, console: Console, every_seconds: float = LINE_EVERY_SECONDS):
        self.console, self.every_seconds = console, every_seconds
        self.tasks: list[_LineTask] = []

    def task(self, description: str, total: int = 0) -> ProgressTask:
        self.tasks.append(_LineTask(self, description, total))
        return self.tasks[-1]

    def finish(self) -> None:
        """Each task's last count, where it moved since its last line."""
        for task in self.tasks:
            if task.done != task.shown_done:
                task.show()

    def show(self, task: _LineTask, elapsed: float) -> None:
        rate = task.done / elapsed if elapsed > 0 else 0.0
        line = f"{task.description}: {task.done:,}"
        if task.total:
            line += f"/{task.total:,} ({task.done / task.total:.0%})"
        line += f", {format_rate(rate) if rate else '0/s'}, {format_duration(elapsed)} elapsed"
        if task.total and rate and task.done < task.total:
            line += f", ETA {format_duration((task.total - task.done) / rate)}"
        self.console.print(line, markup=False, highlight=False)


def format_duration(seconds: float) -> str:
    """Seconds as M:SS, or H:MM:SS from an hour."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@contextmanager
def rich_progress(console: Console | None = None) -> Iterator[RichProgress | LineProgress]:
    """A live progress display for the duration of the block (plain lines when the console is not a terminal)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        lines = LineProgress(console)
        try:
            yield lines
        finally:
            lines.finish()
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield RichProgress(progress)
