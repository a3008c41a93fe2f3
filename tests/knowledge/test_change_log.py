"""The store's change log, on both backends: every write logs the chunks it adds and removes, and the vector indexes
kept beside the store catch up from it, reading only the changed chunks, to the state a full rebuild gives."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.knowledge import store_base
from ragtune.knowledge.vectors import FlatVectorIndex, HnswVectorIndex


def test_writes_log_the_chunks_they_add_and_remove(project, corpus):
    store = project.kb.store
    start = store.generation
    project.ingest([str(corpus)])
    first = store.generation
    touched, added = store.chunk_changes(start, first)
    assert np.array_equal(added, store.chunk_ids()) and np.array_equal(touched, added)

    mars = corpus / "space" / "mars.txt"
    old_mars = {h.chunk_id for h in project.search("Olympus Mons", k=20) if h.source == "space/mars.txt"}
    mars.write_text("Mars has two small moons, Phobos and Deimos, named after the sons of Ares.")
    (corpus / "animals" / "cats.md").unlink()
    before = set(store.chunk_ids().tolist())
    project.ingest([str(corpus)], prune=True)
    touched, added = store.chunk_changes(first, store.generation)
    after = set(store.chunk_ids().tolist())
    assert set(added.tolist()) == after - before  # the new Mars chunks
    assert old_mars <= set(touched.tolist()) and (before - after) <= set(touched.tolist())
    assert store.chunk_changes(store.generation, store.generation)[0].size == 0
    assert store.chunk_changes(store.generation + 1, store.generation) is None


def test_the_log_keeps_a_bounded_number_of_generations(project, corpus, monkeypatch):
    monkeypatch.setattr(store_base, "CHANGE_LOG_GENERATIONS", 2)
    store = project.kb.store
    start = store.generation
    project.ingest([str(corpus)])
    for text in ("one", "two", "three"):
        (corpus / "note.txt").write_text(f"A note that changes: {text}.")
        project.ingest([str(corpus)])
    assert store.chunk_changes(start, store.generation) is None  # too far back: rebuild from the store
    assert store.chunk_changes(store.generation - 2, store.generation) is not None


def following_a_change(project, corpus, index):
    """`index` synced with the ingested corpus, which then changes (one file edited, one added, one deleted) and is
    ingested again; the index is left one write behind."""
    project.ingest([str(corpus)])
    index.sync(project.kb.store)
    (corpus / "space" / "mars.txt").write_text("Mars has two small moons, Phobos and Deimos, and a tall volcano.")
    (corpus / "space" / "comets.txt").write_text("Halley's comet returns every 76 years; comets are icy bodies.")
    (corpus / "animals" / "cats.md").unlink()
    project.ingest([str(corpus)], prune=True)
    return index


@pytest.mark.parametrize("project", ["sqlite"], indirect=True)
@pytest.mark.parametrize("index_kind", [FlatVectorIndex, HnswVectorIndex])
def test_an_index_catches_up_from_the_log_to_what_a_rebuild_gives(project, corpus, tmp_path, monkeypatch,
                                                                   index_kind):
    store = project.kb.store
    (tmp_path / "following").mkdir()
    following = following_a_change(project, corpus, index_kind(tmp_path / "following"))

    monkeypatch.setattr(type(store), "embeddings", lambda self: pytest.fail("read all"))
    following.sync(store)  # a server's index after another process's ingest
    monkeypatch.undo()
    (tmp_path / "rebuilt").mkdir()
    rebuilt = index_kind(tmp_path / "rebuilt")
    rebuilt.sync(store)
    assert np.array_equal(following.ids, rebuilt.ids) and np.array_equal(following.ids, store.chunk_ids())
    assert np.allclose(np.asarray(following.matrix), np.asarray(rebuilt.matrix))
    queries = project.kb.embedder.encode(["Phobos and Deimos", "Halley's comet", "cats"])
    assert following.search(queries, 3) == rebuilt.search(queries, 3)

    restarted = index_kind(tmp_path / "following")  # a new process: the saved index, then the log
    (corpus / "space" / "comets.txt").unlink()
    project.ingest([str(corpus)], prune=True)
    monkeypatch.setattr(type(store), "embeddings", lambda self: pytest.fail("read all"))
    restarted.sync(store)
    monkeypatch.undo()
    assert np.array_equal(restarted.ids, store.chunk_ids())


def test_a_generation_published_without_its_log_sends_indexes_to_the_store(project, corpus):
    """As a ragtune from before the log, still running during an upgrade, writes: nobody trusts the log across it."""
    store = project.kb.store
    project.ingest([str(corpus)])
    before = store.generation
    store.db.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")
    assert store.chunk_changes(before, store.generation) is None
    unlogged = store.generation
    (corpus / "note.txt").write_text("A new note about dogs and their owners, who walk them twice a day.")
    project.ingest([str(corpus)])
    assert store.chunk_changes(before, store.generation) is None
    touched, added = store.chunk_changes(unlogged, store.generation)
    assert len(added) == 1 and np.array_equal(touched, added)


def test_the_bm25_index_tokenizes_only_changed_chunks_and_ranks_as_a_rebuild(project, corpus, tmp_path, monkeypatch):
    from ragtune.knowledge.lexical import LexicalIndex

    store = project.kb.store
    following = following_a_change(project, corpus, LexicalIndex(tmp_path / "following"))

    monkeypatch.setattr(type(store), "chunk_texts", lambda self: pytest.fail("read every chunk"))
    following.sync(store)
    restarted = LexicalIndex(tmp_path / "following")  # a new process: the saved terms, then the log
    (corpus / "space" / "comets.txt").write_text("Comets: Halley's returns every 76 years, Hale-Bopp rarely.")
    project.ingest([str(corpus)])
    restarted.sync(store)
    following.sync(store)
    monkeypatch.undo()
    rebuilt = LexicalIndex(tmp_path / "rebuilt")
    rebuilt.sync(store)
    assert np.array_equal(following.ids, store.chunk_ids()) and np.array_equal(restarted.ids, store.chunk_ids())
    for query in ("Phobos Deimos moons", "Halley comet years", "cats sleep", "tallest volcano", "wolves"):
        expected = rebuilt.search(query, 5)
        assert following.search(query, 5) == expected and restarted.search(query, 5) == expected, query


def test_a_write_updates_the_indexes_beside_sqlite_and_leaves_a_servers_to_their_readers(project, corpus):
    """On SQLite the indexes beside the store are the store's own files: ingest and deletion bring them up to date.
    On PostgreSQL each reading process keeps its own copy: the writer leaves it, and a search catches it up."""
    store, lexical = project.kb.store, project.kb.lexical
    project.ingest([str(corpus)])
    first = store.generation
    assert lexical.generation == (first if store.backend == "sqlite" else -1)
    assert project.search("Olympus Mons", k=3, mode="lexical")[0].source == "space/mars.txt"
    assert lexical.generation == first  # caught up by the search, from the store
    project.kb.delete_source(str(corpus.resolve()), "space/mars.txt")
    assert lexical.generation == (store.generation if store.backend == "sqlite" else first)
    assert all(hit.source != "space/mars.txt" for hit in project.search("Olympus Mons", k=3, mode="lexical"))
    assert lexical.generation == store.generation
