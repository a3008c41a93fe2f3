"""Reading query files for batch search: JSONL lines of {"id", "query"}."""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.errors import RagtuneError


def read_queries(path: Path) -> list[dict]:
    """Parse a queries file, naming the file and line of any malformed entry."""
    if not path.is_file():
        raise RagtuneError(f"{path}: no such file", "pass a JSONL file of {\"id\": ..., \"query\": ...} lines")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RagtuneError(f"{path}:{number}: invalid JSON ({exc.msg})", "fix or remove that line") from exc
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or "id" not in row:
            raise RagtuneError(f"{path}:{number}: expected an object with \"id\" and a string \"query\"",
                               "fix or remove that line")
        rows.append(row)
    return rows
