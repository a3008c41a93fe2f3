"""`ragtune store migrate`: move a project's knowledge base from its SQLite file to a database server."""

from __future__ import annotations

from pathlib import Path

import typer

from ragtune.cli import ProjectOption, _user_errors, console, err_console

store_app = typer.Typer(help="The knowledge base's store: move it to PostgreSQL.", no_args_is_help=True)


@store_app.command("migrate")
@_user_errors
def migrate(to: str = typer.Option(..., "--to", help="The target database, e.g. postgresql://user:pass@host/db."),
            project: Path = ProjectOption):
    """Copy the project's SQLite knowledge base into the database at --to (resumable: run it again after a stop),
    verify it by counts and checksum, copy the answers, feedback and arena votes servers recorded, then point
    storage.url (or RAGTUNE_STORE_URL) at it."""
    from ragtune.knowledge.migrate import migrate_records, migrate_store
    from ragtune.knowledge.postgres_connection import masked
    from ragtune.knowledge.storage import BACKENDS, open_url
    from ragtune.knowledge.store import KnowledgeStore
    from ragtune.progress import rich_progress
    from ragtune.workspace import DATABASE_FILE, STATE_DIR, Workspace

    root = project.expanduser().resolve()
    if not (root / STATE_DIR / DATABASE_FILE).is_file():
        from ragtune.errors import RagtuneError

        raise RagtuneError(f"{root} has no SQLite knowledge base to migrate",
                           f"ingest first, or pass --project DIR (one of: {', '.join(BACKENDS)} URLs as --to)")
    workspace = Workspace.open(root)
    source, target = KnowledgeStore(workspace.database_path), open_url(to)
    try:
        with rich_progress(err_console) as progress:
            report = migrate_store(source, target, progress)
    finally:
        source.close()
        target.close()
    console.print(f"copied {report.copied} sources ({report.skipped} already there); the target holds "
                  f"{report.counts['sources']} sources, {report.counts['documents']} documents and "
                  f"{report.counts['chunks']} chunks, checksum {report.checksum[:16]}… equal to the project's")
    records = migrate_records(workspace.database_path, to)
    console.print(f"recorded answers, battles and votes there: {records['answers']}, {records['arena_battles']} and "
                  f"{records['arena_votes']}")
    console.print(f"use it: set storage.url: {masked(to)} in {workspace.root / 'ragtune.yaml'} "
                  "(with the password) or export RAGTUNE_STORE_URL")
