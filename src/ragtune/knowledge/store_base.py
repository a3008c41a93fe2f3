"""What the knowledge stores share whatever engine holds them: every query whose SQL both SQLite and PostgreSQL read
the same way, written once with `?` placeholders, and the Python that assembles their rows. Each backend
(ragtune.knowledge.store, ragtune.knowledge.postgres_store) adds its connection, its writes, its vector search and
what its dialect says differently."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ragtune.knowledge.types import Chunk, ChunkFilter, Hit, RawDocument

CHUNK_JOINS = "FROM chunks c JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = d.source_id"
META_UPSERT = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
CHANGE_LOG_GENERATIONS = 1_000  # generations of chunk changes kept; an index further behind is rebuilt
_IN_LIST_SIZE = 900  # ids bound per query (SQLite's bound-parameter limit is 999 on older builds)


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


class StoreBase:
    """Subclasses set `backend`, `db` (an object with `execute(sql, params)` returning a DB-API cursor),
    `PLACEHOLDER` and `BYTE_ORDER` (the collation clause ordering text by bytes), and implement the writes
    (`_insert_returning_id`, `_insert_documents`, `_transaction()` holding the write lock, `_bump_generation()`),
    `embeddings()`,
    `_filter_sql(where)`, `_vector(value)` (a stored embedding as float32) and `_database_bytes()`.

    Every write logs the chunks it adds and removes (`chunk_changes`): the vector indexes kept beside a SQLite store
    follow it; on PostgreSQL the vector index is the database's own and the log awaits the BM25 index (which bm25s
    cannot update in place) or a further backend's."""

    backend = ""
    # Whether a write brings the indexes kept beside the store up to date. On SQLite they are the store's own files,
    # which every later process loads. On a database server each reading process keeps its own and catches up from
    # the change log at its next search: an ingest job (on any machine) would build a copy nobody reads.
    writer_updates_indexes = True
    PLACEHOLDER = "?"
    BYTE_ORDER = ""

    def _insert_returning_id(self, sql: str, params) -> int:
        """Run an INSERT of one row and return the id it was given."""
        raise NotImplementedError

    def _insert_documents(self, source_id: int, documents: list[PreparedDocument]) -> None:
        """Store a source's documents with their chunks and embeddings, in the caller's transaction."""
        raise NotImplementedError

    def _execute(self, sql: str, params=()):
        if self.PLACEHOLDER != "?":
            sql = sql.replace("?", self.PLACEHOLDER)
        return self.db.execute(sql, params)

    def _vector(self, value) -> np.ndarray:
        raise NotImplementedError

    def _database_bytes(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.db.close()

    # -- metadata -------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(META_UPSERT, (key, value))

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
        rows = self._execute("SELECT key, root, fingerprint, status FROM sources")
        return {(root, key): StoredSource(key, root, fingerprint, status) for key, root, fingerprint, status in rows}

    def document_signatures(self) -> Iterator[tuple[str, str, str, str, bytes]]:
        """(source root, source key, part, content hash, MinHash signature) of every stored document."""
        for root, key, part, digest, signature in self._execute(
                "SELECT s.root, s.key, d.part, d.content_hash, d.minhash FROM documents d "
                "JOIN sources s ON s.id = d.source_id").fetchall():
            yield root, key, part, digest, bytes(signature)

    def replace_sources(self, batch: list[tuple[dict, list[PreparedDocument]]]) -> None:
        """Atomically replace each source's documents and chunks (one transaction for the whole batch).

        Each entry is (source row: key, root, kind, fingerprint, size_bytes, status, note, optionally modified_at and
        ingested_at (now by default); documents).
        """
        with self._transaction():
            generation = self.generation + 1
            for source, documents in batch:
                self._log_source_chunks(generation, source["root"], source["key"], added=False)
                self._execute("DELETE FROM sources WHERE root = ? AND key = ?", (source["root"], source["key"]))
                row = {"modified_at": None, "ingested_at": time.time(), **source}
                source_id = self._insert_returning_id(
                    "INSERT INTO sources (key, root, kind, fingerprint, size_bytes, status, note, ingested_at, "
                    "modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    tuple(row[name] for name in ("key", "root", "kind", "fingerprint", "size_bytes", "status", "note",
                                                 "ingested_at", "modified_at")))
                self._insert_documents(source_id, documents)
                self._log_source_chunks(generation, source["root"], source["key"], added=True)
            self._end_change(generation)

    def record_rejected(self, source: dict, *, keep_documents: bool) -> None:
        """Record that a source could not be read (key, root, kind, size_bytes, note): a stored earlier version
        keeps its documents and gets the note; otherwise the source is stored as 'rejected' with an empty
        fingerprint, so the next ingest tries it again."""
        with self._transaction():
            if keep_documents:
                self._execute("UPDATE sources SET note = ? WHERE root = ? AND key = ?",
                              (f"latest version rejected: {source['note']}", source["root"], source["key"]))
            else:  # a version another ingest stored meanwhile goes, chunks and all, as any removal
                generation = self.generation + 1
                removed = self._log_source_chunks(generation, source["root"], source["key"], added=False)
                self._execute("DELETE FROM sources WHERE root = ? AND key = ?", (source["root"], source["key"]))
                if removed:
                    self._end_change(generation)
                self._execute("INSERT INTO sources (key, root, kind, fingerprint, size_bytes, status, note, "
                              "ingested_at) VALUES (?, ?, ?, '', ?, 'rejected', ?, ?)",
                              (source["key"], source["root"], source["kind"], source["size_bytes"], source["note"],
                               time.time()))

    def delete_sources(self, sources: Iterable[tuple[str, str]]) -> int:
        """Remove sources, given as (root, key), with their documents and chunks; returns how many went."""
        with self._transaction():
            generation = self.generation + 1
            removed = 0
            for root, key in sources:
                self._log_source_chunks(generation, root, key, added=False)
                removed += self._execute("DELETE FROM sources WHERE root = ? AND key = ?", (root, key)).rowcount
            if removed:
                self._end_change(generation)
        return removed

    # -- the change log: what derived indexes kept beside the store apply instead of reading it all -----------
    def _log_source_chunks(self, generation: int, root: str, key: str, *, added: bool) -> int:
        """Log every chunk of a source as added (after it is written) or removed (before it is deleted); returns how
        many."""
        return self._execute(f"INSERT INTO chunk_changes (generation, chunk_id, added) SELECT ?, c.id, ? "
                             f"{CHUNK_JOINS} WHERE s.root = ? AND s.key = ?", (generation, added, root, key)).rowcount

    def _end_change(self, generation: int) -> None:
        """Finish a write, in its transaction: publish `generation`, whose chunks are logged, and forget the log's
        oldest generations. A generation published without its log (by a ragtune from before the log, still running
        during an upgrade) restarts the log after it."""
        if int(self.get_meta("logged_until") or 0) != generation - 1:
            self.set_meta("changes_from", str(generation - 1))
        oldest = generation - CHANGE_LOG_GENERATIONS
        if oldest > int(self.get_meta("changes_from") or 0):
            self._execute("DELETE FROM chunk_changes WHERE generation <= ?", (oldest,))
            self.set_meta("changes_from", str(oldest))
        self.set_meta("logged_until", str(generation))
        self._bump_generation()

    def _log_reaches(self, since: int, until: int) -> bool:
        return int(self.get_meta("changes_from") or 0) <= since <= until <= int(self.get_meta("logged_until") or 0)

    def chunk_changes(self, since: int, until: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The chunks changed after generation `since` up to `until`: (touched, added) ids, ascending. Every touched
        chunk leaves an index; the added ones (whose last change added them) come back with their stored
        embedding. None when the log does not cover those generations (pruned meanwhile, or written by an older
        ragtune): rebuild from the store."""
        if not self._log_reaches(since, until):
            return None
        rows = self._execute("SELECT chunk_id, added FROM chunk_changes WHERE generation > ? AND generation <= ? "
                             "ORDER BY id", (since, until)).fetchall()
        if not self._log_reaches(since, until):  # pruned while it was read
            return None
        state = {chunk_id: bool(added) for chunk_id, added in rows}  # the last change of each chunk wins
        touched = np.array(sorted(state), dtype=np.int64)
        return touched, np.array([chunk_id for chunk_id in touched.tolist() if state[chunk_id]], dtype=np.int64)

    def embeddings_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, embedding matrix) of the given chunks that exist, in id order."""
        rows = sorted(self._in_lists("SELECT id, embedding FROM chunks WHERE id IN ({ids})", list(ids)),
                      key=lambda row: row[0])
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return (np.array([row[0] for row in rows], dtype=np.int64),
                np.stack([self._vector(row[1]) for row in rows]).astype(np.float32, copy=False))

    # -- ingest manifest ------------------------------------------------------------------------------
    def start_run(self) -> int:
        return self._insert_returning_id("INSERT INTO ingest_runs (started_at) VALUES (?)", (time.time(),))

    def finish_run(self, run_id: int, summary: dict) -> None:
        self._execute("UPDATE ingest_runs SET finished_at = ?, summary = ? WHERE id = ?",
                      (time.time(), json.dumps(summary), run_id))

    def ingest_runs(self) -> list[dict]:
        """Every ingest run (started_at, finished_at, summary), oldest first."""
        rows = self._execute("SELECT started_at, finished_at, summary FROM ingest_runs ORDER BY id")
        return [{"started_at": started, "finished_at": finished, "summary": json.loads(summary) if summary else None}
                for started, finished, summary in rows]

    def add_ingest_run(self, run: dict) -> None:
        """Record a run copied from another store, as `ingest_runs` gives it."""
        self._execute("INSERT INTO ingest_runs (started_at, finished_at, summary) VALUES (?, ?, ?)",
                      (run["started_at"], run["finished_at"],
                       json.dumps(run["summary"]) if run["summary"] is not None else None))

    def last_run(self) -> dict | None:
        row = self._execute("SELECT started_at, finished_at, summary FROM ingest_runs "
                            "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
        return {"started_at": row[0], "finished_at": row[1], **json.loads(row[2])} if row else None

    # -- reads ----------------------------------------------------------------------------------------
    def document_texts(self) -> Iterator[tuple[str, str, str]]:
        """(source key, part, text) of every stored document, in id order."""
        yield from self._execute("SELECT s.key, d.part, d.text FROM documents d JOIN sources s "
                                 "ON s.id = d.source_id ORDER BY d.id").fetchall()

    def chunk_texts(self) -> tuple[np.ndarray, list[str]]:
        """(chunk ids, chunk texts) of every chunk, in id order."""
        rows = self._execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_texts_of(self, ids: Iterable[int]) -> tuple[np.ndarray, list[str]]:
        """(chunk ids, chunk texts) of the given chunks that exist, in id order."""
        rows = sorted(self._in_lists("SELECT id, text FROM chunks WHERE id IN ({ids})", list(ids)))
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def chunk_records(self) -> list[tuple[int, str, str, int, str]]:
        """(chunk id, source root, source key, document id, text) of every chunk, in id order."""
        return self._execute(f"SELECT c.id, s.root, s.key, d.id, c.text {CHUNK_JOINS} ORDER BY c.id").fetchall()

    def chunk_ids_matching(self, where: ChunkFilter) -> np.ndarray:
        """Ids of the chunks a filter allows, ascending."""
        conditions, params = self._filter_sql(where)
        rows = self._execute(f"SELECT c.id {CHUNK_JOINS} WHERE {' AND '.join(conditions) or 'TRUE'} ORDER BY c.id",
                             params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _filter_sql(self, where: ChunkFilter) -> tuple[list[str], list]:
        """SQL conditions (on `CHUNK_JOINS`' aliases c, d, s) with their parameters, in this backend's dialect."""
        raise NotImplementedError

    def hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        """Load the chunks behind (chunk id, score) pairs, keeping their order."""
        if not scored:
            return []
        rows = self._in_lists(f"SELECT c.id, s.key, c.text, d.id, d.title, c.heading {CHUNK_JOINS} "
                              "WHERE c.id IN ({ids})", [chunk_id for chunk_id, _ in scored])
        by_id = {row[0]: row for row in rows}
        return [Hit(chunk_id=cid, source=by_id[cid][1], text=by_id[cid][2], score=score, document_id=by_id[cid][3],
                    title=by_id[cid][4], heading=by_id[cid][5]) for cid, score in scored if cid in by_id]

    def _in_lists(self, sql: str, ids: list[int]) -> list[tuple]:
        """The rows of `sql` (its `{ids}` an IN list) for every id, a bounded number of ids per query."""
        rows = []
        for start in range(0, len(ids), _IN_LIST_SIZE):
            part = [int(i) for i in ids[start:start + _IN_LIST_SIZE]]
            rows += self._execute(sql.format(ids=",".join("?" * len(part))), part).fetchall()
        return rows

    def source_list(self) -> list[dict]:
        """Every stored source with its kind, status and why, size, ingest time and chunk count, by key."""
        rows = self._execute(
            "SELECT s.key, s.root, s.kind, s.status, s.note, s.size_bytes, s.ingested_at, s.modified_at, "
            "COUNT(DISTINCT d.id), COUNT(c.id) FROM sources s LEFT JOIN documents d ON d.source_id = s.id "
            f"LEFT JOIN chunks c ON c.document_id = d.id GROUP BY s.id ORDER BY s.key{self.BYTE_ORDER}, "
            f"s.root{self.BYTE_ORDER}")
        names = ("source", "root", "kind", "status", "note", "size_bytes", "ingested_at", "modified_at", "documents",
                 "chunks")
        return [dict(zip(names, row)) for row in rows]

    def source_documents(self, root: str, key: str) -> list[dict]:
        """The documents of one source (part, title, text), in order."""
        rows = self._execute("SELECT d.part, d.title, d.text FROM documents d JOIN sources s ON s.id = d.source_id "
                             "WHERE s.root = ? AND s.key = ? ORDER BY d.id", (root, key))
        return [{"part": part, "title": title, "text": text} for part, title, text in rows]

    def documents_by_id(self) -> dict[int, dict]:
        """Every stored document's source key, root, part, title and dates (origin's modification, ingest), by id."""
        rows = self._execute("SELECT d.id, s.key, s.root, d.part, d.title, s.modified_at, s.ingested_at "
                             "FROM documents d JOIN sources s ON s.id = d.source_id")
        names = ("source", "root", "part", "title", "modified_at", "ingested_at")
        return {row[0]: dict(zip(names, row[1:])) for row in rows}

    def chunk_sample(self, ids: Iterable[int]) -> list[tuple[int, int, int, str, np.ndarray]]:
        """(chunk id, document id, token count, text, embedding) of the given chunks, in id order."""
        rows = self._in_lists("SELECT id, document_id, token_count, text, embedding FROM chunks WHERE id IN ({ids})",
                              sorted(ids))
        return [(i, d, n, t, self._vector(e)) for i, d, n, t, e in sorted(rows, key=lambda row: row[0])]

    def chunk_documents(self) -> dict[int, int]:
        """The document id of every chunk, by chunk id."""
        return dict(self._execute("SELECT id, document_id FROM chunks").fetchall())

    def document_embeddings(self, document_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The chunk embeddings of each given document (rows in chunk order), by document id."""
        grouped: dict[int, list[tuple[int, np.ndarray]]] = {}
        rows = self._in_lists("SELECT id, document_id, embedding FROM chunks WHERE document_id IN ({ids})",
                              sorted(set(document_ids)))
        for chunk_id, document_id, vector in rows:
            grouped.setdefault(document_id, []).append((chunk_id, self._vector(vector)))
        return {document_id: np.stack([vector for _, vector in sorted(rows, key=lambda row: row[0])])
                for document_id, rows in grouped.items()}

    def export_source(self, root: str, key: str) -> tuple[dict, list[PreparedDocument]]:
        """One source as `replace_sources` takes it: its row (dates included) and its documents with their chunks
        and embeddings."""
        row = self._execute("SELECT id, key, root, kind, fingerprint, size_bytes, status, note, ingested_at, "
                              "modified_at FROM sources WHERE root = ? AND key = ?", (root, key)).fetchone()
        names = ("key", "root", "kind", "fingerprint", "size_bytes", "status", "note", "ingested_at", "modified_at")
        documents = []
        for document_id, part, title, text, digest, minhash, metadata in self._execute(
                "SELECT id, part, title, text, content_hash, minhash, metadata FROM documents WHERE source_id = ? "
                "ORDER BY id", (row[0],)).fetchall():
            chunks = self._execute("SELECT ordinal, text, heading, start_char, end_char, token_count, embedding "
                                     "FROM chunks WHERE document_id = ? ORDER BY id", (document_id,)).fetchall()
            documents.append(PreparedDocument(
                RawDocument(source=key, text=text, title=title, part=part, metadata=json.loads(metadata)), text,
                digest, bytes(minhash),
                [Chunk(t, ordinal, start, end, tokens, heading)
                 for ordinal, t, heading, start, end, tokens, _ in chunks],
                np.stack([self._vector(c[6]) for c in chunks]) if chunks
                else np.zeros((0, 0), dtype=np.float32)))
        return dict(zip(names, row[1:])), documents

    def token_counts(self) -> np.ndarray:
        """The token count of every chunk."""
        return np.fromiter((r[0] for r in self._execute("SELECT token_count FROM chunks")), dtype=np.int64)

    def chunk_ids(self) -> np.ndarray:
        """The ids of every chunk, ascending."""
        return np.fromiter((r[0] for r in self._execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def has_chunks(self) -> bool:
        """Whether the knowledge base holds anything to retrieve (without counting a large table)."""
        return bool(self._execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Row counts of sources, documents and chunks, and the stored size in bytes."""
        count = lambda table: self._execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {"sources": count("sources"), "documents": count("documents"), "chunks": count("chunks"),
                "database_bytes": self._database_bytes()}

    # -- health history -------------------------------------------------------------------------------
    def add_snapshot(self, summary: dict, embeddings: np.ndarray, *, created_at: float | None = None,
                     generation: int | None = None) -> None:
        """Record what the knowledge base looks like now (see ragtune.health.snapshots); a copied snapshot keeps its
        time and generation."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self._execute("INSERT INTO snapshots (created_at, generation, summary, embeddings, dimension) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (created_at or time.time(), self.generation if generation is None else generation,
                       json.dumps(summary), embeddings.tobytes(), embeddings.shape[1] if embeddings.size else 0))

    def latest_snapshot_generation(self) -> int | None:
        row = self._execute("SELECT generation FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def snapshots(self, latest: int = 21) -> list[dict]:
        """The first snapshot and the `latest` most recent, oldest first: id, created_at, generation, summary and
        the embedding sample."""
        rows = self._execute("SELECT id, created_at, generation, summary, embeddings, dimension FROM snapshots "
                             "WHERE id = (SELECT MIN(id) FROM snapshots) OR id IN (SELECT id FROM snapshots "
                             "ORDER BY id DESC LIMIT ?) ORDER BY id", (latest,))
        return [{"id": i, "created_at": at, "generation": generation, "summary": json.loads(summary),
                 "embeddings": np.frombuffer(bytes(blob), dtype=np.float32).reshape(-1, dimension) if dimension
                 else np.zeros((0, 0), dtype=np.float32)}
                for i, at, generation, summary, blob, dimension in rows]

    def add_probe_run(self, probe_set: str, questions: int, k: int, recall: float, *,
                      created_at: float | None = None, generation: int | None = None) -> None:
        """Record a probe-set recall now (or a copied one, with its time and generation)."""
        self._execute("INSERT INTO probe_runs (created_at, generation, probe_set, questions, k, recall) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (created_at or time.time(), self.generation if generation is None else generation, probe_set,
                       questions, k, recall))

    def probe_runs(self) -> list[dict]:
        """Every recorded probe-set recall, oldest first."""
        rows = self._execute("SELECT created_at, generation, probe_set, questions, k, recall FROM probe_runs "
                             "ORDER BY id")
        names = ("created_at", "generation", "probe_set", "questions", "k", "recall")
        return [dict(zip(names, row)) for row in rows]
