"""Finished stages of a comparison on disk, so that `--resume` after a crash reuses them instead of redoing them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ragtune.atomic_files import write_bytes_atomically
from ragtune.errors import RagtuneError

STAGES_DIR = "stages"
FINGERPRINT_FILE = "experiment.json"


class StageCache:
    """One JSON file per finished stage under `root/stages/`, valid for one experiment fingerprint."""

    def __init__(self, root: Path, experiment: dict, fingerprint: str, *, resume: bool):
        self.dir = root / STAGES_DIR
        self.reused: list[str] = []
        marker = root / FINGERPRINT_FILE
        finished = sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []
        if finished and not resume:
            raise RagtuneError(f"{root} already holds a comparison",
                               "add --resume to reuse its finished stages, or choose another --out")
        if resume and marker.is_file():
            previous = json.loads(marker.read_text(encoding="utf-8"))["fingerprint"]
            if previous != fingerprint:
                raise RagtuneError(f"{root} holds a comparison with different settings; its stages cannot be reused",
                                   "run with the same settings, or choose another --out")
        self.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"fingerprint": fingerprint, "experiment": experiment}, indent=2),
                          encoding="utf-8")

    def run(self, name: str, compute: Callable[[], dict]) -> dict:
        """The stage's saved result, or compute it and save it (atomically) when it has not finished before."""
        path = self._path(name)
        if path.is_file():
            self.reused.append(name)
            return json.loads(path.read_text(encoding="utf-8"))
        result = compute()
        write_bytes_atomically(path, json.dumps(result, default=str).encode("utf-8"))
        return result

    def _path(self, name: str) -> Path:
        return self.dir / f"{name.replace('/', '_').replace('+', '_plus_')}.json"
