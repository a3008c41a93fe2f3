"""The PostgreSQL backend against a real server: bad connections and databases give clear errors and write nothing,
two ingests at once leave no duplicates or orphans, and two replicas answer alike and see new documents at once."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from ragtune.errors import RagtuneError
from ragtune.knowledge.postgres_connection import masked
from ragtune.knowledge.postgres_store import PostgresKnowledgeStore, like_pattern
from ragtune.knowledge.storage import STORE_URL_VARIABLE
from ragtune.project import Project

from postgres_server import PASSWORD


def test_an_unreachable_server_wrong_credentials_and_a_missing_database_are_clear(postgres):
    closed_port = postgres.url().replace(f":{postgres.port}/", ":1/")
    with pytest.raises(RagtuneError, match=r"cannot connect to PostgreSQL at .*:\*\*\*@127\.0\.0\.1:1/") as error:
        PostgresKnowledgeStore(closed_port)
    assert "server is running" in error.value.hint and PASSWORD not in str(error.value.message)
    with pytest.raises(RagtuneError, match="password authentication failed") as error:
        PostgresKnowledgeStore(postgres.url(password="wrong"))
    assert "user name and password" in error.value.hint
    with pytest.raises(RagtuneError, match="does not exist") as error:
        PostgresKnowledgeStore(postgres.url("no_such_database"))
    assert "create the database" in error.value.hint


def test_a_user_who_cannot_create_the_vector_extension_is_told_and_nothing_is_written(postgres, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS reader")
        admin.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pass'")
        admin.execute("GRANT CREATE ON SCHEMA public TO reader")
    database = postgres_url.rsplit("/", 1)[1]
    reader_url = f"postgresql://reader:reader-pass@127.0.0.1:{postgres.port}/{database}"
    with pytest.raises(RagtuneError, match="cannot use pgvector") as error:
        PostgresKnowledgeStore(reader_url)
    assert "CREATE EXTENSION vector" in error.value.hint
    with psycopg.connect(postgres_url) as admin:  # the failed opening left no schema or table behind
        tables = admin.execute("SELECT tablename FROM pg_tables WHERE schemaname IN ('public', 'ragtune')").fetchall()
        schemas = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'ragtune'").fetchall()
    assert tables == [] and schemas == []
    PostgresKnowledgeStore(postgres_url).close()  # the owner can; then a user allowed to read and write may use it
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("GRANT USAGE ON SCHEMA ragtune TO reader")
        admin.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ragtune TO reader")
        admin.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA ragtune TO reader")
    store = PostgresKnowledgeStore(reader_url)
    assert store.generation == 0 and store.counts()["chunks"] == 0
    store.close()


def test_source_globs_become_like_patterns_and_passwords_are_masked():
    assert like_pattern("docs/*.md") == "docs/%.md" and like_pattern("a_b?%!") == "a!_b_!%!!"
    with pytest.raises(RagtuneError, match="character classes"):
        like_pattern("[ab].txt")
    assert masked("postgresql://kb:secret@db:5432/kb") == "postgresql://kb:***@db:5432/kb"
    assert masked("postgresql://db/kb?user=kb&password=secret&x=1") == "postgresql://db/kb?user=kb&password=***&x=1"


def test_a_newer_schema_is_refused(postgres_url):
    PostgresKnowledgeStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("UPDATE ragtune.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RagtuneError, match="newer ragtune"):
        PostgresKnowledgeStore(postgres_url)


def test_an_older_schema_is_migrated_forward_at_open(postgres_url):
    from ragtune.knowledge.postgres_store import SCHEMA_VERSION

    PostgresKnowledgeStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # as version 1 left it: no change log
        admin.execute("DROP TABLE ragtune.chunk_changes")
        admin.execute("DELETE FROM ragtune.meta WHERE key IN ('changes_from', 'logged_until')")
        admin.execute("UPDATE ragtune.meta SET value = '7' WHERE key = 'generation'")
        admin.execute("UPDATE ragtune.meta SET value = '1' WHERE key = 'schema_version'")
    store = PostgresKnowledgeStore(postgres_url)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION) and store.get_meta("changes_from") == "7"
    assert store.chunk_changes(6, 7) is None and store.chunk_changes(7, 7)[0].size == 0  # the log starts now
    store.close()


INGEST = "import sys; from ragtune.project import Project; Project(sys.argv[1]).ingest([sys.argv[2]])"


def test_two_ingests_at_once_leave_no_duplicates_or_orphans(postgres_url, tmp_path):
    corpus = tmp_path / "notes"
    corpus.mkdir()
    for i in range(24):
        (corpus / f"note{i:02d}.txt").write_text(f"Note {i}: ward {i} keeps {i * 3} spare oxygen cylinders and "
                                                 f"{i + 40} masks for the night shift of unit {i}.")
    environment = {**os.environ, STORE_URL_VARIABLE: postgres_url}
    workers = [subprocess.Popen([sys.executable, "-c", INGEST, str(tmp_path / f"project{n}"), str(corpus)],
                                env=environment) for n in range(2)]
    assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    with psycopg.connect(postgres_url, options="-c search_path=ragtune") as db:
        one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        assert one("SELECT COUNT(*) FROM sources") == 24
        assert one("SELECT COUNT(*) FROM (SELECT root, key FROM sources GROUP BY root, key HAVING COUNT(*) > 1) d") == 0
        assert one("SELECT COUNT(*) FROM documents WHERE source_id NOT IN (SELECT id FROM sources)") == 0
        assert one("SELECT COUNT(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)") == 0
        stored = one("SELECT COUNT(*) FROM documents")
        assert stored + one("SELECT COUNT(*) FROM sources WHERE status <> 'indexed'") >= 24 and stored <= 24


def test_two_replicas_answer_alike_and_see_a_new_document_without_a_restart(postgres_url, tmp_path, embedder,
                                                                          monkeypatch, corpus):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    monkeypatch.setenv(STORE_URL_VARIABLE, postgres_url)
    first, second = Project(tmp_path / "replica1"), Project(tmp_path / "replica2")
    first.ingest([str(corpus)])
    for mode in ("dense", "lexical", "hybrid"):
        assert [h.chunk_id for h in first.search("tallest volcano", mode=mode)] == \
               [h.chunk_id for h in second.search("tallest volcano", mode=mode)]
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "comets.txt").write_text("Comets are icy bodies; Halley's comet returns every 76 years.")
    first.ingest([str(extra)])  # the second replica keeps running: its next search sees the new document
    for mode in ("dense", "lexical", "hybrid"):
        assert second.search("How often does Halley's comet return?", k=1, mode=mode)[0].source == "comets.txt"
    assert second.status()["store"] == {"backend": "postgresql", "url": postgres_url.replace(PASSWORD, "***")}
    first.close()
    second.close()


@pytest.mark.parametrize("project", ["sqlite"], indirect=True)
def test_store_migrate_copies_a_sqlite_knowledge_base_resumably_and_verifies_it(project, corpus, postgres_url,
                                                                               monkeypatch):
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.knowledge import migrate as migrate_module
    from ragtune.knowledge.migrate import content_checksum

    project.ingest([str(corpus)])
    project.kb.store.add_probe_run("probe.jsonl", 4, 5, 0.75)
    root = str(project.workspace.root)
    monkeypatch.setattr(migrate_module, "BATCH_CHUNKS", 1)  # one source per transaction
    original = PostgresKnowledgeStore.replace_sources
    calls = {"n": 0}

    def stop_on_third(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("stopped")
        return original(self, batch)

    monkeypatch.setattr(PostgresKnowledgeStore, "replace_sources", stop_on_third)
    with pytest.raises(KeyboardInterrupt):
        migrate_module.migrate_store(project.kb.store, PostgresKnowledgeStore(postgres_url))
    monkeypatch.setattr(PostgresKnowledgeStore, "replace_sources", original)
    partial = PostgresKnowledgeStore(postgres_url)
    assert partial.counts()["sources"] == 2  # two batches committed, the third rolled back
    partial.close()

    from test_records_database import answer, battle

    from ragtune.arena.store import ArenaStore, Vote
    from ragtune.serve.answer_log import AnswerLog

    log, arena = AnswerLog(project.workspace.database_path), ArenaStore(project.workspace.database_path)
    log.record("r1", "smollm2", "rag", [{"role": "user", "content": "Which volcano?"}], answer("Olympus Mons"))
    log.add_feedback("r1", "down", "too short")
    arena.add_battle(battle(1))
    arena.vote("b1", Vote("a"))
    log.close()
    arena.close()
    result = CliRunner().invoke(app, ["store", "migrate", "--to", postgres_url, "--project", root])
    assert result.exit_code == 0, result.output
    assert "copied 2 sources (2 already there)" in result.stdout and PASSWORD not in result.stdout
    assert "recorded answers, battles and votes there: 1, 1 and 1" in result.stdout
    moved_log, moved_arena = AnswerLog(postgres_url), ArenaStore(postgres_url)
    assert moved_log.get("r1")["feedback_comment"] == "too short" and len(moved_arena.judgements()) == 1
    moved_log.close()
    moved_arena.close()
    target = PostgresKnowledgeStore(postgres_url)
    assert content_checksum(target) == content_checksum(project.kb.store)
    assert target.get_meta("embedder") == "minilm-l6" and len(target.snapshots()) == 1
    assert target.probe_runs() == project.kb.store.probe_runs() and target.last_run() == project.kb.store.last_run()
    target.close()
    monkeypatch.setenv(STORE_URL_VARIABLE, postgres_url)  # the project now runs on PostgreSQL, same answers
    moved = Project(project.workspace.root)
    assert [h.chunk_id for h in moved.search("tallest volcano", mode="lexical")][:1] and \
        [h.source for h in moved.search("tallest volcano")] == [h.source for h in project.search("tallest volcano")]
    moved.close()


@pytest.mark.parametrize("project", ["sqlite"], indirect=True)
def test_store_migrate_refuses_a_database_holding_another_knowledge_base(project, corpus, tmp_path, postgres_url):
    from ragtune.knowledge.migrate import migrate_store
    from ragtune.knowledge.store import KnowledgeStore

    project.ingest([str(corpus)])
    other = tmp_path / "other.txt"
    other.write_text("Another team's handbook: expenses are filed by the fifth of each month.")
    foreign = PostgresKnowledgeStore(postgres_url)
    migrate_store(KnowledgeStore(_single_source_project(tmp_path, other)), foreign)
    before = foreign.counts()
    with pytest.raises(RagtuneError, match=r"not a copy of this project's \(1 sources: other.txt") as refused:
        migrate_store(project.kb.store, foreign)
    assert "empty database" in refused.value.hint and foreign.counts() == before  # nothing was copied
    foreign.close()


def _single_source_project(tmp_path, document) -> object:
    """The SQLite file of a project holding only `document`."""
    from ragtune.knowledge.storage import LOCAL_STORE

    other = Project(tmp_path / "other-project", LOCAL_STORE)
    other.ingest([str(document)])
    path = other.kb.store.path
    other.close()
    return path


def test_the_environment_picks_the_backend_unless_a_project_keeps_its_own_file(tmp_path, monkeypatch):
    from ragtune.knowledge.storage import LOCAL_STORE

    monkeypatch.setenv(STORE_URL_VARIABLE, "postgresql://nobody:x@127.0.0.1:1/none")
    own = Project(tmp_path / "comparison", LOCAL_STORE)  # a comparison's project: never the shared database
    assert own.kb.store.backend == "sqlite" and own.status()["store"]["backend"] == "sqlite"
    own.close()
    with pytest.raises(RagtuneError, match="cannot connect to PostgreSQL"):
        Project(tmp_path / "deployed")
    monkeypatch.setenv(STORE_URL_VARIABLE, "mysql://db/kb")
    with pytest.raises(RagtuneError, match="unknown database scheme 'mysql://'"):
        Project(tmp_path / "other")


def test_the_store_option_names_the_database_for_one_command(tmp_path, postgres_url, monkeypatch):
    import json

    from typer.testing import CliRunner

    from ragtune.cli import app

    monkeypatch.setenv(STORE_URL_VARIABLE, "sqlite")  # restored after the test: the option sets it for the process
    runner = CliRunner()
    result = runner.invoke(app, ["--store", postgres_url, "status", "--project", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["store"] == {"backend": "postgresql",
                                                  "url": postgres_url.replace(PASSWORD, "***")}
    result = runner.invoke(app, ["--store", "postgresql://ragtune:secret@127.0.0.1:1/kb", "status", "--project",
                                 str(tmp_path)])
    assert result.exit_code == 1 and "cannot connect to PostgreSQL" in result.output
    assert "secret" not in result.output


def test_a_text_stored_meanwhile_by_another_ingest_is_noted_on_its_source(postgres_url):
    """Two ingests read the store before either writes: the second one's copy of the same text is not stored twice,
    and its source says so instead of claiming to be indexed."""
    import numpy as np

    from ragtune.knowledge.store import PreparedDocument
    from ragtune.knowledge.types import Chunk, RawDocument

    def source(key: str, title: str | None = None):
        text = "Masks must be worn in every ward of the hospital."
        document = PreparedDocument(RawDocument(source=key, text=text, title=title), text, "same-hash", b"",
                                    [Chunk(text, 0, 0, len(text), 10)], np.ones((1, 4), dtype=np.float32) / 2)
        return {"key": key, "root": "r", "kind": "text", "fingerprint": key, "size_bytes": 1, "status": "indexed",
                "note": None}, [document]

    store = PostgresKnowledgeStore(postgres_url)
    store.replace_sources([source("first.txt", title="a PDF title with a NUL\x00 in it")])
    store.replace_sources([source("second.txt")])
    listed = {entry["source"]: entry for entry in store.source_list()}
    assert listed["first.txt"]["status"] == "indexed" and listed["first.txt"]["documents"] == 1
    assert listed["second.txt"]["status"] == "duplicate" and listed["second.txt"]["documents"] == 0
    assert "stored by a concurrent ingest" in listed["second.txt"]["note"]
    store.close()


def _drop_connections_to(url: str) -> int:
    """End every other session on the database of `url`, as a server restart or a failover would."""
    with psycopg.connect(url, autocommit=True) as admin:
        return admin.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def test_a_dropped_connection_is_made_again_and_the_search_answers(postgres_url, tmp_path, embedder, monkeypatch,
                                                                  corpus):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    monkeypatch.setenv(STORE_URL_VARIABLE, postgres_url)
    project = Project(tmp_path / "replica")
    project.ingest([str(corpus)])
    for mode in ("dense", "hybrid"):  # a dense search reads in a transaction of its own: retried too
        expected = [h.chunk_id for h in project.search("tallest volcano", mode=mode)]
        assert _drop_connections_to(postgres_url) >= 1
        assert [h.chunk_id for h in project.search("tallest volcano", mode=mode)] == expected  # the read is retried
    assert _drop_connections_to(postgres_url) >= 1
    with pytest.raises(psycopg.OperationalError):  # a write is not retried: it may have committed
        project.kb.store.set_meta("probe", "1")
    project.kb.store.set_meta("probe", "2")  # the next call connects again
    assert project.kb.store.get_meta("probe") == "2"
    project.close()
