"""How every benchmark reports: JSON on stdout, and to a file when `--out` is given."""

from __future__ import annotations

import json
from pathlib import Path


def emit(results: dict, out: Path | None) -> None:
    """Print `results` as JSON and write them to `out` if set."""
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        out.write_text(text)
