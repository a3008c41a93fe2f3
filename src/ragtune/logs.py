"""Where ragtune's warnings go: stderr, in one format, for the command and for the processes it starts."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def send_warnings_to_stderr(console: Console | None = None, *, replace: bool = False) -> None:
    """Warnings logged by ragtune and its libraries, at WARNING and above, to stderr in one format. Set up before any
    library does it for us (absl, under rouge-score, installs a bare root handler on first use, which also printed
    other loggers' DEBUG records); a no-op where logging is already configured, unless `replace`: a spawned stage
    process has imported its target's libraries, which may have configured it, before it can run this."""
    handler = RichHandler(console=console or Console(stderr=True), level=logging.WARNING, show_time=False,
                          show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler], force=replace)
