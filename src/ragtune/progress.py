"""Progress reporting for long work: items done, rate and ETA (Rich in the terminal, silent in the API)."""

from __future__ import annotations

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


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f}/s" if task.speed else "", style="progress.data.speed")


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


@contextmanager
def rich_progress(console: Console | None = None) -> Iterator[RichProgress]:
    """A live progress display for the duration of the block."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        yield RichProgress(progress)
