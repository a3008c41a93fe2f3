"""Functions the child-process tests run in a spawned child: importable by module name in a fresh interpreter
(this folder is on sys.path; a test module's own name depends on how pytest imported it)."""

from __future__ import annotations

import os
import signal

from ragtune.errors import RagtuneError, SourceError


def counts_in_another_process(n, *, progress, offset=0):
    task = progress.task("counting", total=n)
    for _ in range(n):
        task.advance()
    task.add_total(2)
    return {"pid": os.getpid(), "sum": sum(range(n)) + offset}


def fails_with_advice(*, progress):
    raise RagtuneError("the run cannot start", hint="free some memory")


def dies(*, progress):
    os.kill(os.getpid(), signal.SIGKILL)


def fails_reading_a_source(*, progress):
    raise SourceError("docs/a.pdf", "encrypted", hint="decrypt it")


def warns(*, progress):
    import logging

    logging.getLogger("ragtune.training.finetune").warning("3 of 9 rows removed while cleaning")
