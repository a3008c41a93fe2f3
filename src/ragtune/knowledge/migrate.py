"""Copying a knowledge store to another backend (`ragtune store migrate --to URL`): source by source, in batches of
one transaction each, skipping what the target already holds (so a stopped copy resumes), then verified by counts
and a checksum over every source, chunk text and embedding; then what the servers recorded (answers, feedback,
arena votes)."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.progress import ProgressReporter, SilentProgress

BATCH_CHUNKS = 2_000  # chunks copied per transaction
MIGRATED_FROM = "migrated_from"  # meta key: the identity of the store a copy came from


@dataclass
class MigrationReport:
    copied: int
    skipped: int
    counts: dict
    checksum: str


def content_checksum(store) -> str:
    """sha256 over every source, document part, chunk text and embedding, in a fixed order (the same for any
    backend holding the same knowledge base)."""
    digest = hashlib.sha256()
    for row in store.content_rows():
        digest.update("\t".join("" if value is None else str(value) for value in row[:7]).encode("utf-8"))
        digest.update(row[7])
    return digest.hexdigest()


def migrate_store(source, target, progress: ProgressReporter | None = None) -> MigrationReport:
    """Copy every source of `source` into `target` that it does not hold yet (same fingerprint), with the embedder
    settings and the health history, then check both hold the same knowledge base."""
    progress = progress or SilentProgress()
    _refuse_a_foreign_target(source, target)
    target.set_meta(MIGRATED_FROM, source.identity)  # before the first copy, so a stopped copy resumes
    for key in ("embedder", "embedder_runtime"):
        wanted, present = source.get_meta(key), target.get_meta(key)
        if present and target.counts()["chunks"] and wanted != present:
            raise RagtuneError(f"the target already holds a knowledge base embedded with {key} '{present}', the "
                               f"source one with '{wanted}'", "migrate into an empty database")
        if wanted:
            target.set_meta(key, wanted)
    held = target.sources()
    todo = [(root, key) for (root, key), stored in sorted(source.sources().items())
            if (root, key) not in held or held[(root, key)].fingerprint != stored.fingerprint]
    task = progress.task("copying sources", len(todo))
    batch, chunks = [], 0
    for root, key in todo:
        row, documents = source.export_source(root, key)
        batch.append((row, documents))
        chunks += sum(len(d.chunks) for d in documents)
        if chunks >= BATCH_CHUNKS:
            target.replace_sources(batch)
            task.advance(len(batch))
            batch, chunks = [], 0
    if batch:
        target.replace_sources(batch)
        task.advance(len(batch))
    _copy_history(source, target)
    counts = {name: (source.counts()[name], target.counts()[name]) for name in ("sources", "documents", "chunks")}
    if any(mine != theirs for mine, theirs in counts.values()):
        raise RagtuneError(f"after the copy the counts differ (source, target): {counts}",
                           "the target holds sources the project does not: migrate into an empty database")
    checksum = content_checksum(source)
    if content_checksum(target) != checksum:
        raise RagtuneError("after the copy the target's content differs from the source's (checksum)",
                           "migrate into an empty database, and report this to the ragtune maintainers")
    return MigrationReport(copied=len(todo), skipped=len(source.sources()) - len(todo),
                           counts={name: pair[0] for name, pair in counts.items()}, checksum=checksum)


def _refuse_a_foreign_target(source, target) -> None:
    """Stop before writing anything when the target holds a knowledge base that is not a copy of this one."""
    if not target.counts()["sources"] or target.get_meta(MIGRATED_FROM) == source.identity:
        return
    theirs = sorted(f"{key} ({root})" for root, key in set(target.sources()) - set(source.sources()))
    shown = f": {', '.join(theirs[:3])}{' and more' if len(theirs) > 3 else ''}" if theirs else ""
    raise RagtuneError(f"the target already holds a knowledge base that is not a copy of this project's "
                       f"({target.counts()['sources']} sources{shown}); nothing was copied",
                       "migrate into an empty database (createdb NAME), or point storage.url at the target to use "
                       "what it holds")


def _copy_history(source, target) -> None:
    """The ingest runs, snapshots and probe recalls, once (a resumed copy finds them there)."""
    if not target.ingest_runs():
        for run in source.ingest_runs():
            target.add_ingest_run(run)
    if not target.snapshots(latest=1):
        for snapshot in source.snapshots(latest=10_000):
            target.add_snapshot(snapshot["summary"], snapshot["embeddings"], created_at=snapshot["created_at"],
                                generation=snapshot["generation"])
    if not target.probe_runs():
        for run in source.probe_runs():
            target.add_probe_run(run["probe_set"], run["questions"], run["k"], run["recall"],
                                 created_at=run["created_at"], generation=run["generation"])


RECORD_TABLES = ("answers", "arena_battles", "arena_votes")  # what servers record, in foreign-key order


def migrate_records(database: Path, url: str) -> dict[str, int]:
    """Copy the answers, feedback and arena votes recorded in a project's SQLite file to the database at `url`
    (rows it holds already are kept); returns how many rows each table holds there."""
    from ragtune.arena.store import ArenaStore
    from ragtune.knowledge.postgres_connection import PostgresConnection
    from ragtune.serve.answer_log import AnswerLog

    for records in (AnswerLog(url), ArenaStore(url)):  # their tables, as a server would make them
        records.close()
    source, target = sqlite3.connect(database), PostgresConnection(url)
    try:
        held = {}
        for table in RECORD_TABLES:
            if source.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
                cursor = source.execute(f"SELECT * FROM {table}")
                names = [column[0] for column in cursor.description]
                with target.transaction(), target.cursor() as writer:
                    writer.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                                       f"({', '.join(['%s'] * len(names))}) ON CONFLICT DO NOTHING", cursor.fetchall())
            held[table] = target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return held
    finally:
        source.close()
        target.close()
