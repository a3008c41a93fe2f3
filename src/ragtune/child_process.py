"""Run one heavy stage in a fresh Python process, so that what it leaves in the allocator ends with it.

A training run in a long-lived process leaves memory the process can neither use for Python objects nor hand
back (glibc heap, partly oneDNN's primitive cache: the demo's 40-step SFT left 0.6 GB that `release_freed_memory`
could not return), so the next run of the same `compare` started that much higher. A spawned child starts from
nothing and returns everything when it exits (BENCHMARKS.md has the figures). Its progress is shown by the parent's
reporter; its exception is raised in the parent.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import pickle
import queue
import signal
import traceback
from typing import Any, Callable

from ragtune.errors import RagtuneError
from ragtune.logs import send_warnings_to_stderr
from ragtune.progress import ProgressReporter, SilentProgress

# Seconds the parent, itself interrupted, waits for the child to end before terminating it. On Ctrl-C the child
# gets the interrupt too and stops where it is; its last checkpoint is what `--resume` continues from.
STOP_GRACE_SECONDS = 30
PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent dies


class StageProcessDied(RuntimeError):
    """The child died without reporting a result (killed, out of memory, or a crash in native code)."""


def run_in_child(target: Callable[..., Any], *args, progress: ProgressReporter | None = None, **kwargs) -> Any:
    """`target(*args, progress=reporter, **kwargs)` in a spawned process; its result is returned here and its
    exception raised here. `target` must be importable (a module-level function) and its arguments picklable;
    the reporter it receives forwards every task and advance to `progress`."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    child = context.Process(target=_child_main, args=(events, target, args, kwargs), name="ragtune-stage")
    child.start()
    try:
        return _relay(events, child, progress or SilentProgress())
    finally:
        child.join(STOP_GRACE_SECONDS)
        if child.is_alive():
            child.terminate()
            child.join()


def _relay(events, child, progress: ProgressReporter) -> Any:
    tasks = {}
    while True:
        try:
            kind, *payload = events.get(timeout=1)
        except queue.Empty:
            if not child.is_alive() and events.empty():
                raise StageProcessDied(f"the {child.name} process ended with exit code {child.exitcode} and no "
                                        "result (out of memory? see the system log)") from None
            continue
        if kind == "task":
            task_id, description, total = payload
            tasks[task_id] = progress.task(description, total)
        elif kind == "advance":
            tasks[payload[0]].advance(payload[1])
        elif kind == "add_total":
            tasks[payload[0]].add_total(payload[1])
        elif kind == "result":
            return pickle.loads(payload[0])
        else:
            raise pickle.loads(payload[0])


class _ForwardedTask:
    def __init__(self, events, task_id: int):
        self.events, self.task_id = events, task_id

    def advance(self, n: int = 1) -> None:
        self.events.put(("advance", self.task_id, n))

    def add_total(self, n: int) -> None:
        self.events.put(("add_total", self.task_id, n))


class _ForwardingProgress:
    def __init__(self, events):
        self.events, self.count = events, 0

    def task(self, description: str, total: int = 0) -> _ForwardedTask:
        self.count += 1
        self.events.put(("task", self.count, description, total))
        return _ForwardedTask(self.events, self.count)


def _child_main(events, target: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    _end_with_parent()
    send_warnings_to_stderr(replace=True)  # as the command that started it
    try:
        result = target(*args, progress=_ForwardingProgress(events), **kwargs)
        events.put(("result", pickle.dumps(result)))
    except BaseException as error:  # KeyboardInterrupt included: the parent re-raises it
        events.put(("error", _picklable(error)))
    events.close()
    events.join_thread()


def _end_with_parent() -> None:
    """Ask Linux to terminate this process when the parent dies (killed, not interrupted): a training run left
    behind would race the next `--resume` for the same run directory. Elsewhere the parent's join does it."""
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _picklable(error: BaseException) -> bytes:
    """The error pickled or, where its class cannot be rebuilt from its arguments, the same message (and advice)
    in a RagtuneError or a RuntimeError with the child's traceback."""
    try:
        data = pickle.dumps(error)
        rebuilt = pickle.loads(data)
        rebuilt.add_note("in the child process:\n" + "".join(traceback.format_tb(error.__traceback__)))
        return pickle.dumps(rebuilt)
    except Exception:
        if isinstance(error, RagtuneError):
            return pickle.dumps(RagtuneError(error.message, error.hint))
        text = "".join(traceback.format_exception(error))
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}\n{text}"))
