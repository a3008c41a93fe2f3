"""The project's SQLite database as a server's threads share it: one connection, one lock, its tables created at
open (the answer log and the arena's votes)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class LockedDatabase:
    """Subclasses set SCHEMA (CREATE ... IF NOT EXISTS statements) and use `self._db` under `self._lock`."""

    SCHEMA = ""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(self.SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()
