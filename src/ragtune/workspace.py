"""A project directory: its config file and its stores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.config import CONFIG_FILE, ProjectConfig, load_config, save_config
from ragtune.errors import RagtuneError

STATE_DIR = ".ragtune"
DATABASE_FILE = "knowledge.sqlite"  # the SQLite knowledge base, under STATE_DIR


@dataclass
class Workspace:
    """Where a project keeps `ragtune.yaml` and, under `.ragtune/`, its knowledge base."""

    root: Path
    config: ProjectConfig

    @classmethod
    def open(cls, root: str | Path = ".", overrides: dict[str, Any] | None = None) -> "Workspace":
        """Open (creating if needed) the project at `root`, with optional config overrides."""
        root = Path(root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        config = load_config(root, overrides)
        if not (root / CONFIG_FILE).exists():
            save_config(root, load_config(root))
        return cls(root=root, config=config)

    @staticmethod
    def require(root: str | Path, other_way: str = "") -> None:
        """Refuse a directory that holds no project, so that a mistyped `--project` neither creates an empty one
        nor answers from it. A knowledge base in a database server (RAGTUNE_STORE_URL) is a project wherever
        its commands run: a replica on another machine starts from an empty directory."""
        from ragtune.knowledge.storage import STORE_URL_VARIABLE

        root = Path(root).expanduser().resolve()
        if (root / CONFIG_FILE).is_file() or os.environ.get(STORE_URL_VARIABLE):
            return
        raise RagtuneError(f"{root} is not a ragtune project (it has no {CONFIG_FILE})",
                           f"pass --project DIR, the directory where `ragtune ingest` ran{other_way}, or ingest "
                           f"documents there first: ragtune ingest DOCS --project {root}")

    @property
    def state_dir(self) -> Path:
        path = self.root / STATE_DIR
        path.mkdir(exist_ok=True)
        return path

    @property
    def database_path(self) -> Path:
        return self.state_dir / DATABASE_FILE

    @property
    def runs_dir(self) -> Path:
        """Fine-tuning runs (one directory each)."""
        return self.state_dir / "runs"

    @property
    def index_dir(self) -> Path:
        path = self.state_dir / "index"
        path.mkdir(exist_ok=True)
        return path
