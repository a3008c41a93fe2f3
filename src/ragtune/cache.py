"""ragtune's cache of derived model files (converted checkpoints, exported embedders): where it is, how an entry
is named after its source, and how an entry is built so that a crash or a concurrent build never leaves a
half-written folder under its final name."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def default_cache_dir() -> Path:
    """`$RAGTUNE_CACHE`, or `~/.cache/ragtune`."""
    return Path(os.environ.get("RAGTUNE_CACHE") or "~/.cache/ragtune").expanduser()


def file_fingerprint(*paths: Path) -> str:
    """First 16 hex digits of the SHA-256 of the files' contents, in order.

    A content hash rather than size+mtime: it costs about 0.1 s per 100 MB, and a reinstalled package with new
    mtimes still hits the cache.
    """
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def build_once(folder: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """`folder`, built by `build(temp)` the first time; `marker` is a file `build` writes last.

    The build happens in a temp folder beside `folder` (named after this process, so an abandoned one from a
    killed process is removed by the next build) and is renamed into place in one step; when another process
    finished the same folder first, its result is kept.
    """
    if (folder / marker).is_file():
        return folder
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temps(root, folder.name)
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder.name}-{os.getpid()}-", dir=root))
    try:
        build(temp)
        _publish(temp, folder, marker)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return folder


def _publish(temp: Path, folder: Path, marker: str) -> None:
    """Give the finished `temp` folder its final name in one step; a concurrent build may have won."""
    try:
        os.replace(temp, folder)
    except OSError:
        if not (folder / marker).is_file():
            # Neither ours nor a complete one: a leftover from a crash before the atomic rename existed.
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(temp, folder)


def _remove_abandoned_temps(root: Path, name: str) -> None:
    """Delete temp folders of builds of `name` whose process is gone (killed mid-way)."""
    for temp in root.glob(f"{TEMP_PREFIX}{glob.escape(name)}-*"):
        try:
            pid = int(temp.name[len(TEMP_PREFIX) + len(name) + 1:].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(temp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue
