"""Generation stamps of the derived indexes: a saved index is current when its stamp holds the store's generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_stamp(path: Path) -> dict:
    """The saved stamp (generation and details), or {} when there is none."""
    return json.loads(path.read_text()) if path.exists() else {}


def write_stamp(path: Path, generation: int, **details) -> None:
    """Record that the files beside `path` were saved at store `generation`."""
    path.write_text(json.dumps({"generation": generation, **details}))


def saved_ids(stamp: Path, ids_file: Path) -> tuple[int | None, np.ndarray | None]:
    """(generation, chunk ids) of an index as saved on disk, without loading or syncing it; (None, None) when it was
    never saved."""
    saved = read_stamp(stamp)
    if "generation" not in saved or not ids_file.exists():
        return None, None
    return saved["generation"], np.load(ids_file)
