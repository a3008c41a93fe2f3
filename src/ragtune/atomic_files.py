"""Files written so that readers, and a crash, never see them half-written: write a sibling temp file, then
rename it over the target in one step."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(temp)` on a temp file beside `path`, then rename it to `path` (the temp is removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, atomically."""
    return write_atomically(path, lambda temp: temp.write_bytes(data))
