"""The knowledge base's system of record on PostgreSQL: the same tables and guarantees as the SQLite store
(ragtune.knowledge.store), with the embeddings in a pgvector column under an HNSW index, for several servers and
ingest jobs sharing one database.

Writers serialise on one transaction-scoped advisory lock, so two ingests at once commit batch after batch and never
leave duplicates or orphans; each batch of sources is one transaction, so a killed ingest leaves the old or the new
version of a source. Readers never wait for it."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.knowledge.postgres_connection import (SCHEMA_NAME, WRITE_LOCK, PostgresConnection,
                                                   client_libraries_missing, masked)
from ragtune.knowledge.store_base import CHUNK_JOINS, PreparedDocument, StoreBase
from ragtune.knowledge.types import ChunkFilter

# of the PostgreSQL tables, apart from the SQLite file's (each migrates on its own); 2: chunk_changes
SCHEMA_VERSION = 2
MIN_PGVECTOR = (0, 8)  # iterative index scans, which filtered searches need
# pgvector's graph defaults with a deeper search (BENCHMARKS.md, at 5,000 vectors): ef_search 40 gave recall@10 0.83
# against usearch's 0.97, ef_search 256 gives 0.96; building like usearch (m 32, ef_construction 128) gave 0.99 but
# indexed 4x slower, 82 vectors/s at 100,000, slower than the embedder makes them
HNSW_OPTIONS = "m = 16, ef_construction = 64"
EF_SEARCH = 256
EXACT_LIMIT = 20_000  # filters allowing at most this many chunks are searched exactly (as the usearch index does)

_CHUNK_CHANGES = [
    """CREATE TABLE IF NOT EXISTS chunk_changes (id BIGSERIAL PRIMARY KEY, generation BIGINT NOT NULL,
        chunk_id BIGINT NOT NULL, added BOOLEAN NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chunk_changes_generation ON chunk_changes(generation)",
]
_START_CHANGE_LOG = ("INSERT INTO meta SELECT key, value FROM (VALUES ('changes_from'), ('logged_until')) "
                     "AS log(key), (SELECT value FROM meta WHERE key = 'generation') AS now ON CONFLICT DO NOTHING")
# Forward migrations: what takes the tables from version N - 1 to N (run in one transaction with the version stamp)
_MIGRATIONS = {2: [*_CHUNK_CHANGES, _START_CHANGE_LOG]}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sources (
        id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, root TEXT NOT NULL, kind TEXT NOT NULL,
        fingerprint TEXT NOT NULL, size_bytes BIGINT NOT NULL DEFAULT 0, status TEXT NOT NULL, note TEXT,
        ingested_at DOUBLE PRECISION NOT NULL, modified_at DOUBLE PRECISION, UNIQUE (root, key))""",
    """CREATE TABLE IF NOT EXISTS documents (
        id BIGSERIAL PRIMARY KEY, source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
        part TEXT NOT NULL, title TEXT, text TEXT NOT NULL, content_hash TEXT NOT NULL UNIQUE,
        minhash BYTEA NOT NULL, metadata JSONB NOT NULL DEFAULT '{}')""",
    "CREATE INDEX IF NOT EXISTS documents_source ON documents(source_id)",
    """CREATE TABLE IF NOT EXISTS chunks (
        id BIGSERIAL PRIMARY KEY, document_id BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL, text TEXT NOT NULL, heading TEXT, start_char INTEGER NOT NULL,
        end_char INTEGER NOT NULL, token_count INTEGER NOT NULL, embedding vector NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id)",
    """CREATE TABLE IF NOT EXISTS ingest_runs (id BIGSERIAL PRIMARY KEY, started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION, summary TEXT)""",
    """CREATE TABLE IF NOT EXISTS snapshots (id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL,
        generation BIGINT NOT NULL, summary TEXT NOT NULL, embeddings BYTEA NOT NULL, dimension INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS probe_runs (id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL,
        generation BIGINT NOT NULL, probe_set TEXT NOT NULL, questions INTEGER NOT NULL, k INTEGER NOT NULL,
        recall DOUBLE PRECISION NOT NULL)""",
    *_CHUNK_CHANGES,
]


def like_pattern(glob: str) -> str:
    """A source glob (`*` any text, `?` one character) as a LIKE pattern with `!` as the escape character (a
    backslash would depend on the server's standard_conforming_strings)."""
    if "[" in glob:
        raise RagtuneError(f"source filter {glob!r}: character classes ([...]) are not supported on PostgreSQL",
                           "use * and ? only")
    escaped = glob.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped.replace("*", "%").replace("?", "_")


def _text(value: str | None) -> str | None:
    """Text without NUL characters, which PostgreSQL's text and jsonb refuse (SQLite keeps them; PDF titles have
    them)."""
    return value.replace("\x00", "").replace("\\u0000", "") if value else value


def _array(vector) -> np.ndarray:
    """A pgvector value as float32 (binary transfers give pgvector's Vector, text ones numpy arrays)."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32)


class PostgresKnowledgeStore(StoreBase):
    """Sources, documents, chunks and embeddings in PostgreSQL with pgvector; the KnowledgeStore interface."""

    backend = "postgresql"
    writer_updates_indexes = False
    PLACEHOLDER = "%s"
    BYTE_ORDER = ' COLLATE "C"'  # SQLite's order, whatever the database's locale

    def __init__(self, url: str):
        try:
            from pgvector.psycopg import register_vector
        except ImportError:
            raise client_libraries_missing() from None
        self.url = url
        self.path = None  # no local file
        self.db = PostgresConnection(url, configure=self._configure_session)
        self._register_vector = register_vector
        try:
            self._create_schema(self.db.where)
            self.db.execute("INSERT INTO meta VALUES ('store_id', %s) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,))
            self.db.configure()
        except BaseException:
            self.db.close()
            raise

    def _configure_session(self, connection) -> None:
        """The vector type and search settings, on every connection (the first, and any made after a drop)."""
        self._register_vector(connection)
        connection.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        connection.execute("SET hnsw.iterative_scan = relaxed_order")  # filtered searches: more candidates

    def _create_schema(self, where: str) -> None:
        """The extension and tables in one transaction (nothing half-made) unless they exist at this version; an
        older version is migrated forward step by step in that transaction, a newer one refused."""
        import psycopg

        try:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                version = self.get_meta("schema_version") if self.db.execute(
                    f"SELECT to_regclass('{SCHEMA_NAME}.meta') IS NOT NULL").fetchone()[0] else None
                if version is not None and int(version) > SCHEMA_VERSION:
                    raise RagtuneError(f"the knowledge base at {where} was written by a newer ragtune (store "
                                       f"schema {version}; this one reads up to {SCHEMA_VERSION})",
                                       "upgrade ragtune (pip install -U ragtune) to open it")
                if version is not None and int(version) == SCHEMA_VERSION:
                    return  # nothing to create: a user allowed to read and write the tables is enough
                if version is not None:
                    for step in range(int(version) + 1, SCHEMA_VERSION + 1):
                        for statement in _MIGRATIONS[step]:
                            self.db.execute(statement)
                else:
                    self._create_tables(where)
                self.db.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE "
                                "SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
        except psycopg.Error as error:
            self.db.close()
            reason = str(error).strip().splitlines()[0]
            if "vector" in reason:
                raise RagtuneError(f"the database at {where} cannot use pgvector: {reason}",
                                   "install pgvector on the server and run CREATE EXTENSION vector as a superuser "
                                   "(or the database owner on PostgreSQL 13+ with pgvector trusted)") from None
            raise RagtuneError(f"cannot create ragtune's tables in {where}: {reason}",
                               f"connect once as a user allowed to create the schema {SCHEMA_NAME} and its tables (the "
                               "database owner); later a user who may read and write them is enough") from None

    def _create_tables(self, where: str) -> None:
        """pgvector (checked new enough), the schema and its tables, in the caller's transaction."""
        self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        installed = self.db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if tuple(int(n) for n in installed[0].split(".")[:2]) < MIN_PGVECTOR:
            raise RagtuneError(f"the database at {where} has pgvector {installed[0]}; ragtune needs "
                               f"{'.'.join(map(str, MIN_PGVECTOR))} or newer (iterative index scans)",
                               "upgrade pgvector on the server, then ALTER EXTENSION vector UPDATE")
        self.db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA_NAME}")
        for statement in _SCHEMA:
            self.db.execute(statement)
        self.db.execute("INSERT INTO meta VALUES ('generation', '0') ON CONFLICT DO NOTHING")
        self.db.execute(_START_CHANGE_LOG)

    def describe(self) -> dict:
        return {"backend": self.backend, "url": masked(self.url)}

    def _vector(self, value) -> np.ndarray:
        return _array(value)

    def _database_bytes(self) -> int:
        return self.db.execute("SELECT pg_database_size(current_database())").fetchone()[0]

    # -- writes ---------------------------------------------------------------------------------------
    def _insert_returning_id(self, sql: str, params) -> int:
        return self._execute(f"{sql} RETURNING id", params).fetchone()[0]

    def _insert_documents(self, source_id: int, documents: list[PreparedDocument]) -> None:
        """Each document unless another ingest stored its text meanwhile, which the source's note then says."""
        dropped = [d for d in documents if not self._insert_document(source_id, d)]
        if dropped:
            self._note_stored_elsewhere(source_id, dropped, everything=len(dropped) == len(documents))

    def _note_stored_elsewhere(self, source_id: int, dropped: list[PreparedDocument], everything: bool) -> None:
        """Say on the source which of its documents another ingest stored first (under another source)."""
        parts = ", ".join(d.raw.part or "the document" for d in dropped)
        self.db.execute("UPDATE sources SET status = CASE WHEN %s::boolean THEN 'duplicate' ELSE status END, "
                        "note = concat_ws('; ', note, %s::text) WHERE id = %s",
                        (everything, f"{parts}: exact duplicate stored by a concurrent ingest under another source",
                         source_id))

    def _insert_document(self, source_id: int, document: PreparedDocument) -> bool:
        """Store one document with its chunks; False when its text was stored meanwhile by another ingest (the write
        lock orders the batches, not the reads before them), which keeps the first."""
        raw = document.raw
        row = self.db.execute(
            "INSERT INTO documents (source_id, part, title, text, content_hash, minhash, metadata) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (content_hash) DO NOTHING RETURNING id",
            (source_id, _text(raw.part), _text(raw.title), _text(document.text), document.content_hash,
             document.minhash, _text(json.dumps(raw.metadata, default=str)))).fetchone()
        if row is None:
            return False
        if not document.chunks:
            return True
        vectors = np.asarray(document.embeddings, dtype=np.float32)
        self._ensure_vector_index(vectors.shape[1])
        with self.db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO chunks (document_id, ordinal, text, heading, start_char, end_char, token_count, "
                "embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(row[0], c.ordinal, _text(c.text), _text(c.heading), c.start_char, c.end_char, c.token_count, v)
                 for c, v in zip(document.chunks, vectors)])
        return True

    def _ensure_vector_index(self, dimension: int) -> None:
        """Fix the embedding column's dimension and build its HNSW index at the first chunk stored."""
        stored = self.get_meta("dimension")
        if stored is None:
            self.db.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dimension)})")
            self.db.execute(f"CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks USING hnsw "
                            f"(embedding vector_ip_ops) WITH ({HNSW_OPTIONS})")
            self.set_meta("dimension", str(dimension))
        elif int(stored) != dimension:
            raise RagtuneError(f"the knowledge base holds {stored}-dimensional embeddings, this embedder makes "
                               f"{dimension}", "use the embedder the knowledge base was built with")

    def _bump_generation(self) -> None:
        self.db.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield

    # -- reads ----------------------------------------------------------------------------------------
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute("SELECT id, embedding FROM chunks ORDER BY id", binary=True).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.stack([_array(r[1]) for r in rows]))

    def _filter_sql(self, where: ChunkFilter) -> tuple[list[str], list]:
        """LIKE for the source glob, jsonb containment for the metadata (served by no index: a filter narrows the
        chunks a search scores, the HNSW index or the exact scan does the rest)."""
        conditions, params = [], []
        if where.source_glob:
            conditions.append("s.key LIKE ? ESCAPE '!'")
            params.append(like_pattern(where.source_glob))
        if where.metadata:
            conditions.append("d.metadata @> ?::jsonb")
            params.append(json.dumps(where.metadata))
        return conditions, params

    def iter_documents(self) -> Iterator[tuple[int, str]]:
        with self.db.cursor() as cursor:
            yield from cursor.stream("SELECT id, text FROM documents ORDER BY id")

    def iter_chunks(self) -> Iterator[tuple[int, int, int, str]]:
        with self.db.cursor() as cursor:
            yield from cursor.stream("SELECT id, document_id, token_count, text FROM chunks ORDER BY id")

    def integrity_problems(self) -> list[str]:
        """PostgreSQL enforces the foreign keys and checks its pages itself: nothing for ragtune to find."""
        return []

    def content_rows(self) -> Iterator[tuple]:
        """See KnowledgeStore.content_rows (the same rows in the same order, byte for byte)."""
        with self.db.cursor(binary=True) as cursor:
            for row in cursor.stream(
                    "SELECT s.root, s.key, s.fingerprint, s.status, d.part, c.ordinal, c.text, c.embedding "
                    "FROM sources s LEFT JOIN documents d ON d.source_id = s.id LEFT JOIN chunks c ON "
                    "c.document_id = d.id ORDER BY s.root COLLATE \"C\", s.key COLLATE \"C\", d.part COLLATE \"C\" "
                    "NULLS FIRST, c.ordinal NULLS FIRST"):
                yield row[:7] + (_array(row[7]).tobytes() if row[7] is not None else b"",)

    # -- vector search --------------------------------------------------------------------------------
    def nearest(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
                where: ChunkFilter | None = None) -> list[tuple[int, float]]:
        """The `k` chunks of highest inner product with `query` (cosine for normalised vectors), best first, among
        `allowed` ids and those `where` allows: exactly when at most EXACT_LIMIT chunks qualify (an ordering the
        index cannot serve, so the planner scans those rows), else by pgvector's HNSW index; ties by id, as the
        SQLite store's search orders them."""
        vector = np.asarray(query, dtype=np.float32).ravel()
        conditions, params = self._filter_sql(where) if where else ([], [])
        if allowed is not None:
            conditions.append("c.id = ANY(?)")
            params.append([int(i) for i in allowed])
        chosen = f"{CHUNK_JOINS} WHERE {' AND '.join(conditions)} " if conditions else "FROM chunks c "
        if conditions and self._at_most(EXACT_LIMIT, chosen, params, allowed):
            rows = self._execute(f"SELECT c.id, -(c.embedding <#> ?) AS score {chosen}ORDER BY score DESC, c.id "
                                 "LIMIT ?", [vector, *params, k]).fetchall()
        else:
            rows = self.db.read(lambda: self._index_search(chosen, [vector, *params, vector, k]))
        return sorted(((int(chunk_id), float(score)) for chunk_id, score in rows), key=lambda hit: (-hit[1], hit[0]))

    def _index_search(self, chosen: str, params: list) -> list[tuple]:
        """The HNSW index's nearest among the chunks `chosen` (a FROM ... WHERE clause). The planner prices a table
        scan by the table's own pages, not the TOAST pages its vectors live in (each row with its text is over
        2 kB), and chose a 26 ms scan over a 1 ms index search at 8,000 chunks: the index is asked for explicitly.
        Iterative scans keep filtering its candidates until k pass, in roughly the right order."""
        with self.db.transaction():
            self.db.execute("SET LOCAL enable_seqscan = off")
            return self._execute(f"SELECT c.id, -(c.embedding <#> ?) {chosen}ORDER BY c.embedding <#> ? LIMIT ?",
                                 params).fetchall()

    def _at_most(self, limit: int, chosen: str, params: list, allowed: np.ndarray | None) -> bool:
        """Whether the chunks `chosen` (a FROM ... WHERE clause) number at most `limit`, counting no further."""
        if allowed is not None and len(allowed) <= limit:
            return True
        return self._execute(f"SELECT COUNT(*) FROM (SELECT 1 {chosen}LIMIT ?) AS chosen",
                             [*params, limit + 1]).fetchone()[0] <= limit
