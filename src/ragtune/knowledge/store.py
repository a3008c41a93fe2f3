"""The knowledge base's system of record: SQLite holds sources, documents, chunks, their embeddings and the
ingest manifest. The lexical and vector indexes are derived from it (see `generation`). A batch of sources is
written in one transaction, so a killed ingest leaves either the old or the new version of a source, never a mix."""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from filelock import FileLock

from ragtune.errors import RagtuneError
from ragtune.knowledge.store_base import PreparedDocument, StoreBase
from ragtune.knowledge.types import ChunkFilter

SCHEMA_VERSION = 3  # 2: sources.modified_at, snapshots, probe_runs; 3: chunk_changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    root TEXT NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,            -- 'indexed'; 'duplicate' (every document duplicated another source's);
                                     -- 'skipped' (no usable text: garbled, empty); 'rejected' (could not be read)
    note TEXT,                       -- why: which documents were left out and why, or the rejection
    ingested_at REAL NOT NULL,
    modified_at REAL,                -- when the origin last changed it (file time), if it says
    UNIQUE (root, key)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    part TEXT NOT NULL,
    title TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    minhash BLOB NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source_id);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    heading TEXT,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS ingest_runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS snapshots (  -- what the knowledge base looked like after an ingest (ragtune.health)
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    generation INTEGER NOT NULL,
    summary TEXT NOT NULL,           -- counts, languages, token-length quantiles, the sample's lengths and excerpts
    embeddings BLOB NOT NULL,        -- float32 embeddings of a random sample of chunks
    dimension INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunk_changes (  -- each chunk added or removed, by generation (see StoreBase.chunk_changes)
    id INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    chunk_id INTEGER NOT NULL,
    added INTEGER NOT NULL           -- 1 added, 0 removed
);
CREATE INDEX IF NOT EXISTS chunk_changes_generation ON chunk_changes(generation);
CREATE TABLE IF NOT EXISTS probe_runs (  -- retrieval recall@k on a fixed probe set at each health run
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    generation INTEGER NOT NULL,
    probe_set TEXT NOT NULL,
    questions INTEGER NOT NULL,
    k INTEGER NOT NULL,
    recall REAL NOT NULL
);
"""

def _add_column(table: str, column: str, declaration: str):
    """A migration step adding a column unless it is there (a database stopped before its version was stamped)."""
    def step(db: sqlite3.Connection) -> None:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    return step


# Forward migrations: what takes a database from version N - 1 to N
_MIGRATIONS = {2: [_add_column("sources", "modified_at", "REAL")],
               3: []}  # chunk_changes: made by the schema, its log starting at the generation of the migration

@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on a connection in autocommit mode, taking the write lock at its start."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class KnowledgeStore(StoreBase):
    """SQLite-backed sources, documents, chunks and embeddings."""

    backend = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA foreign_keys = ON")
        # Switching to WAL and creating the schema need the database to themselves: processes opening the same
        # store at once (the ranks of a multi-process training run) take turns instead of failing "locked".
        with FileLock(f"{path}.lock"):
            self.db.execute("PRAGMA journal_mode = WAL")
            self._open_schema()
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            for key in ("changes_from", "logged_until"):  # the change log starts at the current generation
                self.db.execute("INSERT OR IGNORE INTO meta SELECT ?, value FROM meta WHERE key = 'generation'",
                                (key,))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
        self.db.execute("PRAGMA synchronous = NORMAL")

    def _open_schema(self) -> None:
        """Create a new database's schema, migrate an older one forward, refuse a newer one."""
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        version = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            if has_meta else None
        # a meta table without a version comes from version 1, which could be stopped between the two statements
        version = int(version[0]) if version else (1 if has_meta else None)
        if version is not None and version > SCHEMA_VERSION:
            self.db.close()
            raise RagtuneError(f"{self.path} was written by a newer ragtune (store schema {version}; this one reads "
                               f"up to {SCHEMA_VERSION})", "upgrade ragtune (pip install -U ragtune) to open it")
        for step in range(version + 1, SCHEMA_VERSION + 1) if version is not None else ():
            with self._transaction():  # each step with its version stamp, so a killed migration resumes cleanly
                for migrate in _MIGRATIONS[step]:
                    migrate(self.db)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(step),))
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def describe(self) -> dict:
        return {"backend": self.backend, "path": str(self.path)}

    def _vector(self, value) -> np.ndarray:
        return np.frombuffer(value, dtype=np.float32)

    def _database_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    # -- writes ---------------------------------------------------------------------------------------
    def _insert_returning_id(self, sql: str, params) -> int:
        # lastrowid, not INSERT ... RETURNING, which needs SQLite 3.35 (Python builds of older systems have less)
        return self.db.execute(sql, params).lastrowid

    def _insert_documents(self, source_id: int, documents: list[PreparedDocument]) -> None:
        for document in documents:
            self._insert_document(source_id, document)

    def _insert_document(self, source_id: int, document: PreparedDocument) -> None:
        raw = document.raw
        document_id = self.db.execute(
            "INSERT INTO documents (source_id, part, title, text, content_hash, minhash, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source_id, raw.part, raw.title, document.text, document.content_hash, document.minhash,
             json.dumps(raw.metadata, default=str))).lastrowid
        vectors = document.embeddings.astype(np.float32)
        self.db.executemany(
            "INSERT INTO chunks (document_id, ordinal, text, heading, start_char, end_char, token_count, embedding)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(document_id, c.ordinal, c.text, c.heading, c.start_char, c.end_char, c.token_count, v.tobytes())
             for c, v in zip(document.chunks, vectors)])

    def _bump_generation(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def _transaction(self):
        return immediate_transaction(self.db)

    # -- reads ----------------------------------------------------------------------------------------
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, embedding matrix) of every chunk, in id order."""
        rows = self.db.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, matrix

    def _filter_sql(self, where: ChunkFilter) -> tuple[list[str], list]:
        """GLOB for the source (`*` also matches `/`); json_extract and json_type for each metadata value, so that
        1 matches neither true nor "1", as in PostgreSQL's jsonb."""
        conditions, params = [], []
        if where.source_glob:
            conditions.append("s.key GLOB ?")
            params.append(where.source_glob)
        for key, value in where.metadata.items():
            path = f'$."{key}"'
            if isinstance(value, bool):
                conditions.append("json_type(d.metadata, ?) = ?")
                params += [path, "true" if value else "false"]
            else:
                types = "'integer', 'real'" if isinstance(value, (int, float)) else "'text'"
                conditions.append(f"json_type(d.metadata, ?) IN ({types}) AND json_extract(d.metadata, ?) = ?")
                params += [path, path, value]
        return conditions, params

    def iter_documents(self) -> Iterator[tuple[int, str]]:
        """(document id, text) of every document, streamed in id order."""
        yield from self.db.execute("SELECT id, text FROM documents ORDER BY id")

    def iter_chunks(self) -> Iterator[tuple[int, int, int, str]]:
        """(chunk id, document id, token count, text) of every chunk, streamed in id order."""
        yield from self.db.execute("SELECT id, document_id, token_count, text FROM chunks ORDER BY id")

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick check and foreign-key check find wrong in the database (empty when sound)."""
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check") if row[0] != "ok"]
        problems += [f"{table} row {rowid} points to a missing {parent} row"
                     for table, rowid, parent, _ in self.db.execute("PRAGMA foreign_key_check")]
        return problems

    def content_rows(self) -> Iterator[tuple]:
        """Everything a copy of the store must reproduce, one row per chunk (and per source without chunks), in a
        fixed order: root, key, fingerprint, status, part, ordinal, text, embedding bytes."""
        for row in self.db.execute(
                "SELECT s.root, s.key, s.fingerprint, s.status, d.part, c.ordinal, c.text, c.embedding FROM sources s "
                "LEFT JOIN documents d ON d.source_id = s.id LEFT JOIN chunks c ON c.document_id = d.id "
                "ORDER BY s.root, s.key, d.part, c.ordinal"):
            yield row[:7] + (bytes(row[7]) if row[7] is not None else b"",)
