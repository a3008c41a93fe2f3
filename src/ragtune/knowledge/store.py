"""The knowledge base's system of record: SQLite holds sources, documents, chunks, their embeddings and the
ingest manifest. The lexical and vector indexes are derived from it (see `generation`). A batch of sources is
written in one transaction, so a killed ingest leaves either the old or the new version of a source, never a mix."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from filelock import FileLock

from ragtune.errors import RagtuneError
from ragtune.knowledge.types import Chunk, Hit, RawDocument

SCHEMA_VERSION = 2  # 2: sources.modified_at, snapshots, probe_runs

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
_MIGRATIONS = {2: [_add_column("sources", "modified_at", "REAL")]}

@dataclass
class StoredSource:
    key: str
    root: str
    fingerprint: str
    status: str


@dataclass
class PreparedDocument:
    """A cleaned document with its chunks and their embeddings, ready to be written."""

    raw: RawDocument
    text: str
    content_hash: str
    minhash: bytes
    chunks: list[Chunk]
    embeddings: np.ndarray | None = None


class KnowledgeStore:
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

    def close(self) -> None:
        self.db.close()

    def describe(self) -> dict:
        return {"backend": self.backend, "path": str(self.path)}

    # -- metadata -------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def identity(self) -> str:
        """A random id given to the store when it was created (indexes derived from it carry it)."""
        return self.get_meta("store_id")

    @property
    def generation(self) -> int:
        """Incremented by every committed change; derived indexes compare it to know they are current."""
        return int(self.get_meta("generation") or 0)

    # -- sources --------------------------------------------------------------------------------------
    def sources(self) -> dict[tuple[str, str], StoredSource]:
        """Stored sources by (root, key)."""
        rows = self.db.execute("SELECT key, root, fingerprint, status FROM sources")
        return {(root, key): StoredSource(key, root, fingerprint, status) for key, root, fingerprint, status in rows}

    def document_signatures(self) -> Iterator[tuple[str, str, str, str, bytes]]:
        """(source root, source key, part, content hash, MinHash signature) of every stored document."""
        yield from self.db.execute(
            "SELECT s.root, s.key, d.part, d.content_hash, d.minhash FROM documents d "
            "JOIN sources s ON s.id = d.source_id")

    def replace_sources(self, batch: list[tuple[dict, list[PreparedDocument]]]) -> None:
        """Atomically replace each source's documents and chunks (one transaction for the whole batch).

        Each entry is (source row: key, root, kind, fingerprint, size_bytes, status, note, optionally modified_at and
        ingested_at (now by default); documents).
        """
        with self._transaction():
            for source, documents in batch:
                self.db.execute("DELETE FROM sources WHERE root = ? AND key = ?", (source["root"], source["key"]))
                source_id = self.db.execute(
                    "INSERT INTO sources (key, root, kind, fingerprint, size_bytes, status, note, ingested_at, "
                    "modified_at) VALUES (:key, :root, :kind, :fingerprint, :size_bytes, :status, :note, "
                    ":ingested_at, :modified_at)",
                    {"modified_at": None, "ingested_at": time.time(), **source}).lastrowid
                for document in documents:
                    self._insert_document(source_id, document)
            self._bump_generation()

    def record_rejected(self, source: dict, *, keep_documents: bool) -> None:
        """Record that a source could not be read (key, root, kind, size_bytes, note): a stored earlier version
        keeps its documents and gets the note; otherwise the source is stored as 'rejected' with an empty
        fingerprint, so the next ingest tries it again."""
        with self._transaction():
            if keep_documents:
                self.db.execute("UPDATE sources SET note = ? WHERE root = ? AND key = ?",
                                (f"latest version rejected: {source['note']}", source["root"], source["key"]))
            else:
                self.db.execute("DELETE FROM sources WHERE root = ? AND key = ?", (source["root"], source["key"]))
                self.db.execute("INSERT INTO sources (key, root, kind, fingerprint, size_bytes, status, note, "
                                "ingested_at) VALUES (:key, :root, :kind, '', :size_bytes, 'rejected', :note, :now)",
                                {**source, "now": time.time()})

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

    def delete_sources(self, sources: Iterable[tuple[str, str]]) -> int:
        """Remove sources, given as (root, key), with their documents and chunks; returns how many went."""
        with self._transaction():
            removed = sum(self.db.execute("DELETE FROM sources WHERE root = ? AND key = ?", source).rowcount
                          for source in sources)
            if removed:
                self._bump_generation()
        return removed

    def _bump_generation(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- ingest manifest ------------------------------------------------------------------------------
    def start_run(self) -> int:
        return self.db.execute("INSERT INTO ingest_runs (started_at) VALUES (?)", (time.time(),)).lastrowid

    def finish_run(self, run_id: int, summary: dict) -> None:
        self.db.execute("UPDATE ingest_runs SET finished_at = ?, summary = ? WHERE id = ?",
                        (time.time(), json.dumps(summary), run_id))

    # -- reads ----------------------------------------------------------------------------------------
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, embedding matrix) of every chunk, in id order."""
        rows = self.db.execute("SELECT id, embedding FROM chunks ORDER BY id").fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, matrix

    def document_texts(self) -> Iterator[tuple[str, str, str]]:
        """(source key, part, text) of every stored document, in id order."""
        yield from self.db.execute(
            "SELECT s.key, d.part, d.text FROM documents d JOIN sources s ON s.id = d.source_id ORDER BY d.id")

    def chunk_texts(self) -> tuple[np.ndarray, list[str]]:
        """(chunk ids, chunk texts) of every chunk, in id order."""
        rows = self.db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_records(self) -> list[tuple[int, str, str, int, str]]:
        """(chunk id, source root, source key, document id, text) of every chunk, in id order."""
        return self.db.execute(
            "SELECT c.id, s.root, s.key, d.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN sources s ON s.id = d.source_id ORDER BY c.id").fetchall()

    def chunk_ids_matching(self, source_glob: str) -> np.ndarray:
        """Ids of chunks whose source key matches a glob pattern (`*` also matches `/`)."""
        rows = self.db.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN sources s ON s.id = d.source_id WHERE s.key GLOB ?", (source_glob,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        """Load the chunks behind (chunk id, score) pairs, keeping their order."""
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        rows = self.db.execute(
            f"SELECT c.id, s.key, c.text, d.id, d.title, c.heading FROM chunks c "
            f"JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = d.source_id "
            f"WHERE c.id IN ({','.join('?' * len(ids))})", ids)
        by_id = {row[0]: row for row in rows}
        return [Hit(chunk_id=cid, source=by_id[cid][1], text=by_id[cid][2], score=score, document_id=by_id[cid][3],
                    title=by_id[cid][4], heading=by_id[cid][5]) for cid, score in scored if cid in by_id]

    def source_list(self) -> list[dict]:
        """Every stored source with its kind, status and why, size, ingest time and chunk count, by key."""
        rows = self.db.execute(
            "SELECT s.key, s.root, s.kind, s.status, s.note, s.size_bytes, s.ingested_at, s.modified_at, "
            "COUNT(DISTINCT d.id), COUNT(c.id) FROM sources s LEFT JOIN documents d ON d.source_id = s.id "
            "LEFT JOIN chunks c ON c.document_id = d.id GROUP BY s.id ORDER BY s.key, s.root")
        names = ("source", "root", "kind", "status", "note", "size_bytes", "ingested_at", "modified_at", "documents",
                 "chunks")
        return [dict(zip(names, row)) for row in rows]

    def source_documents(self, root: str, key: str) -> list[dict]:
        """The documents of one source (part, title, text), in order."""
        rows = self.db.execute(
            "SELECT d.part, d.title, d.text FROM documents d JOIN sources s ON s.id = d.source_id "
            "WHERE s.root = ? AND s.key = ? ORDER BY d.id", (root, key))
        return [{"part": part, "title": title, "text": text} for part, title, text in rows]

    def documents_by_id(self) -> dict[int, dict]:
        """Every stored document's source key, root, part, title and dates (origin's modification, ingest), by id."""
        rows = self.db.execute("SELECT d.id, s.key, s.root, d.part, d.title, s.modified_at, s.ingested_at "
                               "FROM documents d JOIN sources s ON s.id = d.source_id")
        names = ("source", "root", "part", "title", "modified_at", "ingested_at")
        return {row[0]: dict(zip(names, row[1:])) for row in rows}

    def iter_documents(self) -> Iterator[tuple[int, str]]:
        """(document id, text) of every document, streamed in id order."""
        yield from self.db.execute("SELECT id, text FROM documents ORDER BY id")

    def iter_chunks(self) -> Iterator[tuple[int, int, int, str]]:
        """(chunk id, document id, token count, text) of every chunk, streamed in id order."""
        yield from self.db.execute("SELECT id, document_id, token_count, text FROM chunks ORDER BY id")

    def chunk_sample(self, ids: Iterable[int]) -> list[tuple[int, int, int, str, np.ndarray]]:
        """(chunk id, document id, token count, text, embedding) of the given chunks, in id order."""
        ids = sorted(ids)
        rows = []
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            part = ids[start:start + 900]
            rows += self.db.execute(f"SELECT id, document_id, token_count, text, embedding FROM chunks "
                                    f"WHERE id IN ({','.join('?' * len(part))}) ORDER BY id", part).fetchall()
        return [(i, d, n, t, np.frombuffer(e, dtype=np.float32)) for i, d, n, t, e in rows]

    def chunk_documents(self) -> dict[int, int]:
        """The document id of every chunk, by chunk id."""
        return dict(self.db.execute("SELECT id, document_id FROM chunks").fetchall())

    def document_embeddings(self, document_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The chunk embeddings of each given document (rows in chunk order), by document id."""
        ids = sorted(set(document_ids))
        grouped: dict[int, list[np.ndarray]] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            part = ids[start:start + 900]
            for document_id, blob in self.db.execute(
                    f"SELECT document_id, embedding FROM chunks WHERE document_id IN ({','.join('?' * len(part))}) "
                    f"ORDER BY id", part):
                grouped.setdefault(document_id, []).append(np.frombuffer(blob, dtype=np.float32))
        return {document_id: np.stack(rows) for document_id, rows in grouped.items()}

    def token_counts(self) -> np.ndarray:
        """The token count of every chunk."""
        return np.fromiter((r[0] for r in self.db.execute("SELECT token_count FROM chunks")), dtype=np.int64)

    def chunk_ids(self) -> np.ndarray:
        """The ids of every chunk, ascending."""
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick check and foreign-key check find wrong in the database (empty when sound)."""
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check") if row[0] != "ok"]
        problems += [f"{table} row {rowid} points to a missing {parent} row"
                     for table, rowid, parent, _ in self.db.execute("PRAGMA foreign_key_check")]
        return problems

    # -- health history -------------------------------------------------------------------------------
    def add_snapshot(self, summary: dict, embeddings: np.ndarray, *, created_at: float | None = None,
                     generation: int | None = None) -> None:
        """Record what the knowledge base looks like now (see ragtune.health.snapshots); a copied snapshot keeps its
        time and generation."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.db.execute("INSERT INTO snapshots (created_at, generation, summary, embeddings, dimension) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (created_at or time.time(), self.generation if generation is None else generation,
                         json.dumps(summary), embeddings.tobytes(), embeddings.shape[1] if embeddings.size else 0))

    def latest_snapshot_generation(self) -> int | None:
        row = self.db.execute("SELECT generation FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def snapshots(self, latest: int = 21) -> list[dict]:
        """The first snapshot and the `latest` most recent, oldest first: id, created_at, generation, summary and
        the embedding sample."""
        rows = self.db.execute("SELECT id, created_at, generation, summary, embeddings, dimension FROM snapshots "
                               "WHERE id = (SELECT MIN(id) FROM snapshots) OR id IN (SELECT id FROM snapshots "
                               "ORDER BY id DESC LIMIT ?) ORDER BY id", (latest,))
        return [{"id": i, "created_at": at, "generation": generation, "summary": json.loads(summary),
                 "embeddings": np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension) if dimension
                 else np.zeros((0, 0), dtype=np.float32)}
                for i, at, generation, summary, blob, dimension in rows]

    def add_probe_run(self, probe_set: str, questions: int, k: int, recall: float) -> None:
        self.db.execute("INSERT INTO probe_runs (created_at, generation, probe_set, questions, k, recall) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (time.time(), self.generation, probe_set, questions, k, recall))

    def probe_runs(self) -> list[dict]:
        """Every recorded probe-set recall, oldest first."""
        rows = self.db.execute("SELECT created_at, generation, probe_set, questions, k, recall FROM probe_runs "
                               "ORDER BY id")
        names = ("created_at", "generation", "probe_set", "questions", "k", "recall")
        return [dict(zip(names, row)) for row in rows]

    def content_rows(self) -> Iterator[tuple]:
        """Everything a copy of the store must reproduce, one row per chunk (and per source without chunks), in a
        fixed order: root, key, fingerprint, status, part, ordinal, text, embedding bytes."""
        for row in self.db.execute(
                "SELECT s.root, s.key, s.fingerprint, s.status, d.part, c.ordinal, c.text, c.embedding FROM sources s "
                "LEFT JOIN documents d ON d.source_id = s.id LEFT JOIN chunks c ON c.document_id = d.id "
                "ORDER BY s.root, s.key, d.part, c.ordinal"):
            yield row[:7] + (bytes(row[7]) if row[7] is not None else b"",)

    def export_source(self, root: str, key: str) -> tuple[dict, list[PreparedDocument]]:
        """One source as `replace_sources` takes it: its row (dates included) and its documents with their chunks
        and embeddings."""
        row = self.db.execute("SELECT id, key, root, kind, fingerprint, size_bytes, status, note, ingested_at, "
                              "modified_at FROM sources WHERE root = ? AND key = ?", (root, key)).fetchone()
        names = ("key", "root", "kind", "fingerprint", "size_bytes", "status", "note", "ingested_at", "modified_at")
        documents = []
        for document_id, part, title, text, digest, minhash, metadata in self.db.execute(
                "SELECT id, part, title, text, content_hash, minhash, metadata FROM documents WHERE source_id = ? "
                "ORDER BY id", (row[0],)).fetchall():
            chunks = self.db.execute("SELECT ordinal, text, heading, start_char, end_char, token_count, embedding "
                                     "FROM chunks WHERE document_id = ? ORDER BY id", (document_id,)).fetchall()
            documents.append(PreparedDocument(
                RawDocument(source=key, text=text, title=title, part=part, metadata=json.loads(metadata)), text,
                digest, bytes(minhash),
                [Chunk(t, ordinal, start, end, tokens, heading) for ordinal, t, heading, start, end, tokens, _ in chunks],
                np.stack([np.frombuffer(c[6], dtype=np.float32) for c in chunks]) if chunks
                else np.zeros((0, 0), dtype=np.float32)))
        return dict(zip(names, row[1:])), documents

    def counts(self) -> dict[str, int]:
        """Row counts of sources, documents and chunks, and the stored size in bytes."""
        count = lambda table: self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {"sources": count("sources"), "documents": count("documents"), "chunks": count("chunks"),
                "database_bytes": self.path.stat().st_size if self.path.exists() else 0}

    def last_run(self) -> dict | None:
        row = self.db.execute("SELECT started_at, finished_at, summary FROM ingest_runs "
                              "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
        return {"started_at": row[0], "finished_at": row[1], **json.loads(row[2])} if row else None
