"""Generation stamps of the derived indexes: a saved index is current when its stamp holds the store's identity and
generation (the identity keeps an index built from one store, say the SQLite file before a migration, from passing
for another's at the same generation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_stamp(path: Path, store_id: str) -> dict:
    """The saved stamp (generation and details) of an index built from the store `store_id`, or {} when there is none
    (or it was built from another store)."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    return saved if saved.get("store") == store_id else {}


def write_stamp(path: Path, store_id: str, generation: int, **details) -> None:
    """Record that the files beside `path` were saved from store `store_id` at its `generation`."""
    path.write_text(json.dumps({"store": store_id, "generation": generation, **details}))


def saved_ids(stamp: Path, ids_file: Path, store_id: str) -> tuple[int | None, np.ndarray | None]:
    """(generation, chunk ids) of an index as saved on disk from the store `store_id`, without loading or syncing it;
    (None, None) when it was never saved."""
    saved = read_stamp(stamp, store_id)
    if "generation" not in saved or not ids_file.exists():
        return None, None
    return saved["generation"], np.load(ids_file)
