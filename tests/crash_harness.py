"""Kill a real `ragtune` process with SIGKILL at chosen points, then resume it, as a machine crash or the OOM
killer would: the whole process group dies at once, with no chance to clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RAGTUNE = [sys.executable, "-m", "ragtune.cli"]


@dataclass
class KillPoint:
    """Kill once `reached()` is true (polled every 20 ms), then wait `delay` seconds more (the middle of a stage)."""

    name: str
    reached: Callable[[], bool]
    delay: float = 0.0


@dataclass
class CrashLog:
    killed_at: list[str] = field(default_factory=list)  # the kill points that fired before the process ended
    missed: list[str] = field(default_factory=list)  # those the process finished before reaching


def run_once(command: list[str], *, cwd: Path, env: dict, kill: KillPoint | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess | None:
    """Run `command`; None if it was killed at `kill`, else its completed process (output captured)."""
    log = cwd / f".crash-harness-{time.monotonic_ns()}.log"
    with log.open("w+b") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline, fired_at = time.monotonic() + timeout, None
        while process.poll() is None:
            now = time.monotonic()
            if now > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise TimeoutError(f"{command} ran past {timeout} s:\n{_tail(log)}")
            if kill is not None and fired_at is None and kill.reached():
                fired_at = now
            if fired_at is not None and now - fired_at >= kill.delay:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                _wait_for_group_exit(process.pid)
                log.unlink()
                return None
            time.sleep(0.02)
        _wait_for_group_exit(process.pid)  # a child it spawned must not outlive it into the next run
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    log.unlink()
    return subprocess.CompletedProcess(command, process.returncode, text)


def run_with_crashes(first: list[str], resume: list[str], kills: list[KillPoint], *, cwd: Path, env: dict,
                     timeout: float = 300) -> tuple[subprocess.CompletedProcess, CrashLog]:
    """Run `first`, killing it at the first kill point; each later attempt runs `resume` and is killed at the
    next point; the last attempt runs `resume` to the end. A kill point the attempt finishes before reaching is
    recorded as missed (the run has then completed; the remaining points are skipped)."""
    crashes, command = CrashLog(), first
    for point in kills:
        finished = run_once(command, cwd=cwd, env=env, kill=point, timeout=timeout)
        if finished is not None:
            crashes.missed += [p.name for p in kills[kills.index(point):]]
            return _checked(finished), crashes
        crashes.killed_at.append(point.name)
        command = resume
    return _checked(run_once(command, cwd=cwd, env=env, timeout=timeout)), crashes


def _checked(completed: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if completed.returncode != 0:
        raise AssertionError(f"{completed.args} failed with exit code {completed.returncode}:\n{completed.stdout}")
    return completed


def _wait_for_group_exit(group: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise TimeoutError(f"process group {group} still alive {timeout} s after its leader ended")


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:]


def file_exists(path: Path) -> Callable[[], bool]:
    return path.exists


def any_match(directory: Path, pattern: str) -> Callable[[], bool]:
    return lambda: directory.is_dir() and any(directory.glob(pattern))
