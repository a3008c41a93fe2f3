"""Incremental, idempotent ingest: skip unchanged, replace changed, prune removed, never orphan or duplicate."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from ragtune.knowledge import ingest as ingest_module


def consistency(store) -> dict:
    """Counts that must agree whatever happened: no orphans, no duplicate documents."""
    db = store.db
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert one("SELECT COUNT(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)") == 0
    assert one("SELECT COUNT(*) FROM documents WHERE source_id NOT IN (SELECT id FROM sources)") == 0
    assert one("SELECT COUNT(*) FROM (SELECT content_hash FROM documents "
               "GROUP BY content_hash HAVING COUNT(*) > 1)") == 0
    return store.counts()


def test_first_ingest_then_unchanged_is_skipped(project, corpus):
    first = project.ingest([str(corpus)])
    project.kb.sync_indexes()  # as a reader's search does (on SQLite the ingest did it: test_change_log)
    assert len(project.kb.lexical) == len(project.kb.index) == first.chunks
    assert sorted(first.added) == ["animals/cats.md", "animals/dogs.txt", "space/mars.txt", "space/moon.html"]
    assert first.chunks >= 4 and first.rejected == []
    counts = consistency(project.kb.store)
    second = project.ingest([str(corpus)])
    assert second.added == [] and second.updated == [] and len(second.unchanged) == 4
    assert second.chunks == 0 and second.embed_seconds == 0
    assert consistency(project.kb.store) == {**counts, "database_bytes": project.kb.store.counts()["database_bytes"]}


def test_changed_source_replaces_its_chunks(project, corpus):
    project.ingest([str(corpus)])
    before = consistency(project.kb.store)
    (corpus / "space" / "mars.txt").write_text("Mars has two moons, Phobos and Deimos, captured asteroids perhaps.")
    report = project.ingest([str(corpus)])
    assert report.updated == ["space/mars.txt"] and report.added == []
    after = consistency(project.kb.store)
    assert after["sources"] == before["sources"] and after["documents"] == before["documents"]
    hits = project.search("Phobos Deimos", k=1, mode="lexical")
    assert hits[0].source == "space/mars.txt" and "Phobos" in hits[0].text
    assert project.search("Olympus Mons volcano", k=3, mode="lexical") == []


def test_prune_keeps_a_source_that_could_not_be_read_this_time(project, corpus):
    from ragtune.project import Project

    project.ingest([str(corpus)])
    sizes = {path.relative_to(corpus).as_posix(): path.stat().st_size for path in corpus.rglob("*.*")}
    limit = sorted(sizes.values())[1]  # the two largest sources are over the new limit
    over = sorted(key for key, size in sizes.items() if size > limit)
    assert len(over) == 2
    too_large_now = Project(project.workspace.root, {"ingest": {"max_file_mb": limit / 1024 ** 2}})
    report = too_large_now.ingest([str(corpus)], prune=True)
    assert sorted(rejection["source"] for rejection in report.rejected) == over
    assert report.removed == [] and report.missing == [] and consistency(project.kb.store)["sources"] == 4
    too_large_now.close()


def test_prune_removes_deleted_sources(project, corpus):
    project.ingest([str(corpus)])
    shutil.rmtree(corpus / "space")
    without_prune = project.ingest([str(corpus)])
    assert without_prune.removed == [] and consistency(project.kb.store)["sources"] == 4
    assert sorted(without_prune.missing) == ["space/mars.txt", "space/moon.html"]  # said, and kept
    report = project.ingest([str(corpus)], prune=True)
    assert sorted(report.removed) == ["space/mars.txt", "space/moon.html"] and report.missing == []
    assert consistency(project.kb.store)["sources"] == 2
    assert all(not h.source.startswith("space/") for h in project.search("Moon Mars", k=10, mode="hybrid"))


def test_exact_and_near_duplicates_are_skipped(project, corpus):
    original = (corpus / "animals" / "dogs.txt").read_text()
    (corpus / "animals" / "dogs-copy.txt").write_text(original)
    (corpus / "animals" / "dogs-edited.txt").write_text(original.replace("loyal", "faithful"))
    report = project.ingest([str(corpus)])
    reasons = {s["source"]: s["reason"] for s in report.skipped_documents}
    assert len(reasons) == 2, reasons
    assert any("exact duplicate" in r for r in reasons.values())
    assert any("near-duplicate" in r for r in reasons.values())
    assert consistency(project.kb.store)["documents"] == 4


def test_same_relative_path_under_two_roots_is_kept_apart(project, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text(f"Notes of team {name}: the release ships on day {ord(name)}.")
    project.ingest([str(tmp_path / "a")])
    project.ingest([str(tmp_path / "b")], prune=True)
    assert consistency(project.kb.store)["sources"] == 2


def test_interrupted_ingest_rolls_back_and_next_run_completes(project, corpus, monkeypatch):
    monkeypatch.setattr(ingest_module, "EMBED_BATCH_CHUNKS", 1)  # one transaction per source
    calls = {"n": 0}
    store_class = type(project.kb.store)
    original = store_class._insert_document

    def crash_on_third(self, source_id, document):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, source_id, document)

    monkeypatch.setattr(store_class, "_insert_document", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        project.ingest([str(corpus)])
    partial = consistency(project.kb.store)
    assert partial["sources"] == 2 and partial["documents"] == 2, "the interrupted source left nothing behind"
    monkeypatch.setattr(store_class, "_insert_document", original)
    report = project.ingest([str(corpus)])
    assert len(report.added) == 2 and len(report.unchanged) == 2
    assert consistency(project.kb.store)["sources"] == 4


def test_bad_inputs_are_reported_and_the_rest_goes_in(project, corpus, tmp_path):
    project.ingest([str(corpus)])
    stored = consistency(project.kb.store)
    bad = corpus / "bad"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage that is not a pdf \x00\x01")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (bad / "empty.md").write_text("")
    (bad / "latin1.txt").write_bytes("Café au lait is served in Lyon every morning since 1900.".encode("cp1252"))
    (bad / "records.jsonl").write_text('{"text": "First valid record about giraffes and their long necks."}\n'
                                       '{not json}\n'
                                       '{"text": "Second valid record about penguins living in Antarctica."}\n')
    (corpus / "space" / "mars.txt").write_bytes(b"\x00\x01\x02" * 1000)  # stored source turns binary
    report = project.ingest([str(corpus), str(tmp_path / "does-not-exist")])
    rejected = {r["source"]: r for r in report.rejected}
    assert {"bad/broken.pdf", "bad/binary.txt", "bad/empty.md", "space/mars.txt"} <= set(rejected)
    assert any("does-not-exist" in key for key in rejected)
    assert all(r["reason"] for r in report.rejected)
    assert sorted(report.added) == ["bad/latin1.txt", "bad/records.jsonl"]
    assert any("line 2" in w["message"] for w in report.warnings)
    after = consistency(project.kb.store)
    assert after["sources"] == stored["sources"] + 5  # the 3 unreadable new files are recorded as rejected
    status = {entry["source"]: entry for entry in project.kb.store.source_list()}
    for key in ("bad/broken.pdf", "bad/binary.txt", "bad/empty.md"):
        assert status[key]["status"] == "rejected" and status[key]["note"] == rejected[key]["reason"]
        assert status[key]["chunks"] == 0
    assert status["space/mars.txt"]["status"] == "indexed" and status["space/mars.txt"]["note"].startswith(
        "latest version rejected")
    assert project.search("Olympus Mons", k=1, mode="lexical")[0].source == "space/mars.txt", "old version kept"
    again = project.ingest([str(corpus)])  # unreadable files are tried again, and are still not "added"
    assert {"bad/broken.pdf", "bad/binary.txt", "bad/empty.md"} <= {r["source"] for r in again.rejected}
    assert not again.added and consistency(project.kb.store)["sources"] == after["sources"]


def test_every_source_records_its_real_status_and_the_summary_counts_what_was_stored(project, corpus):
    original = (corpus / "animals" / "dogs.txt").read_text()
    (corpus / "animals" / "dogs-copy.txt").write_text(original)
    (corpus / "garbled.txt").write_text("@@## $$%% ^^&& **(( ))__ ++== " * 40)
    report = project.ingest([str(corpus)])
    # sources are read in name order: dogs-copy.txt comes first, so dogs.txt is the duplicate
    assert "garbled.txt" not in report.added and "animals/dogs.txt" not in report.added
    assert {entry["source"]: entry["status"] for entry in report.skipped} == {
        "garbled.txt": "skipped", "animals/dogs.txt": "duplicate"}
    status = {entry["source"]: entry for entry in project.kb.store.source_list()}
    assert status["garbled.txt"]["status"] == "skipped" and status["garbled.txt"]["note"]
    assert status["animals/dogs.txt"]["note"] == "exact duplicate of animals/dogs-copy.txt"
    indexed = [entry for entry in status.values() if entry["status"] == "indexed"]
    assert len(report.added) == len(indexed) and all(entry["chunks"] for entry in indexed)
    assert not project.ingest([str(corpus)]).added  # kept across ingests: unchanged, not added again
    assert project.kb.store.source_list() == list(status.values())



KILLED_INGEST = """
import sys, time
from ragtune.knowledge import ingest
from ragtune.knowledge.embedder import Embedder
from ragtune.project import Project

ingest.EMBED_BATCH_CHUNKS = 1  # commit source by source
encode = Embedder.encode
Embedder.encode = lambda self, texts, on_batch=None: (time.sleep(0.3), encode(self, texts, on_batch))[1]
Project(sys.argv[1]).ingest([sys.argv[2]])
"""


def test_ingest_killed_with_sigkill_leaves_a_consistent_store(project, tmp_path):
    corpus = tmp_path / "many"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"note{i:02d}.txt").write_text(f"Note {i}: the warehouse in city {i} stores {i * 7} crates of "
                                                 f"apples, pears and plums for the winter market number {i}.")
    root = project.workspace.root
    worker = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(root), str(corpus)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None and project.kb.store.counts()["sources"] < 3:
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    partial = consistency(project.kb.store)
    assert 3 <= partial["sources"] < 30, "killed midway"
    assert partial["documents"] == partial["sources"]
    report = project.ingest([str(corpus)])
    # the rest is added, or recorded as a near-duplicate of a note stored before (these notes are alike)
    assert len(report.unchanged) == partial["sources"]
    assert len(report.added) + len(report.skipped) == 30 - partial["sources"]
    assert consistency(project.kb.store)["sources"] == 30
