"""Files written so that readers, and a crash, never see them half-written: write a sibling temp file, then
rename it over the target in one step."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _mode_from_umask() -> int:
    """The mode a plain open() would create a file with: 0o666 less the process umask (read from /proc where it
    can be, since setting the umask to read it would briefly change it for every thread)."""
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(temp)` on a temp file beside `path`, then rename it to `path` (the temp is removed on failure).

    The file gets the permissions the umask gives new files (mkstemp alone would leave it readable by its owner
    only, so a shared report could not be read by the team).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        os.chmod(temp, _mode_from_umask())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """`data` as the whole content of `path`, atomically."""
    return write_atomically(path, lambda temp: temp.write_bytes(data))
