"""What a server records (answers with feedback, arena battles and votes) behaves alike in the project's SQLite file
and in the knowledge base's PostgreSQL database, where several replicas record into one place."""

from __future__ import annotations

import json

import pytest

from ragtune.arena.store import AlreadyVoted, ArenaStore, Battle, Vote
from ragtune.errors import RagtuneError
from ragtune.knowledge.types import Hit
from ragtune.rag import Answer
from ragtune.serve.answer_log import AnswerLog, UnknownResponse


@pytest.fixture(params=["sqlite", "postgresql"])
def records(request, tmp_path):
    """Where records go: a SQLite file's path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "records.sqlite"
    return request.getfixturevalue("postgres_url")


def answer(text: str) -> Answer:
    hit = Hit(chunk_id=7, source="volcanoes.txt", text="Mauna Kea is tall.", score=0.8125)
    return Answer(text, [{"number": 1, "source": "volcanoes.txt", "chunk_id": 7, "text": "..."}], [hit],
                  {"total_s": 0.5, "prompt_tokens": 40, "completion_tokens": 9})


def test_answers_and_feedback_are_recorded_and_read_back(records):
    log = AnswerLog(records)
    for number in range(5):
        log.record(f"r{number}", "smollm2", "rag", [{"role": "user", "content": f"question {number}?"}],
                   answer(f"answer {number}"))
    log.add_feedback("r1", "down", "wrong volcano")
    log.add_feedback("r3", "up", None)
    with pytest.raises(UnknownResponse):
        log.add_feedback("nobody", "up", None)
    record = log.get("r1")
    assert record["feedback"] == "down" and record["feedback_comment"] == "wrong volcano"
    assert record["retrieved"] == [{"chunk_id": 7, "source": "volcanoes.txt", "score": 0.8125}]
    assert record["messages"] == [{"role": "user", "content": "question 1?"}] and record["prompt_tokens"] == 40
    history = log.history(questions_of_latest=2)
    assert [entry["question"] for entry in history] == [None, "question 1?", None, "question 3?", "question 4?"]
    assert [entry["feedback"] for entry in history] == [None, "down", None, "up", None]
    assert history[0]["retrieved"] == [7] and history[0]["cited"] == 1
    log.close()
    reopened = AnswerLog(records)  # the tables exist: opening again keeps what was recorded
    assert reopened.get("r4")["answer"] == "answer 4" and reopened.get("missing") is None
    reopened.close()


def battle(number: int) -> Battle:
    return Battle(id=f"b{number}", origin="live", item=f"q{number}", question=f"question {number}?", rater="ana",
                  strategy_a="rag", strategy_b="ft", answer_a="A", answer_b="B",
                  citations_a=[{"number": 1, "source": "a.txt", "text": "x"}], timings={"a_s": 1.0, "b_s": 2.0})


def test_battles_and_votes_one_vote_each_and_an_import_all_or_nothing(records, tmp_path):
    store = ArenaStore(records)
    for number in range(3):
        store.add_battle(battle(number))
    store.vote("b0", Vote("a", "cites the source", rating_a=5, rating_b=2))
    store.vote("b1", Vote("tie"))
    with pytest.raises(AlreadyVoted):
        store.vote("b0", Vote("b"))
    with pytest.raises(RagtuneError, match="ratings are whole numbers"):
        store.vote("b2", Vote("a", rating_a=9))
    assert [(j.left, j.right, j.outcome) for j in store.judgements()] == [("rag", "ft", "a"), ("rag", "ft", "tie")]
    assert store.battle("b0").citations_a == [{"number": 1, "source": "a.txt", "text": "x"}]
    assert store.shown_to("ana") == {(f"q{n}", frozenset(("rag", "ft"))) for n in range(3)}
    exported = tmp_path / "votes.jsonl"
    assert store.export_jsonl(exported) == 2
    lines = exported.read_text().splitlines()
    store.close()

    other = ArenaStore(tmp_path / "other.sqlite")
    other.add_battle(battle(0))
    other.vote("b0", Vote("b"))
    bad = tmp_path / "bad.jsonl"
    record = json.loads(lines[1])
    record["battle"]["id"], record["vote"]["rating_a"] = "b9", 1
    bad.write_text(lines[0] + "\n" + json.dumps(record).replace('"rating_a": 1', '"rating_a": 6') + "\n")
    with pytest.raises(RagtuneError, match=r"bad.jsonl:2: missing or invalid vote.rating_a"):
        other.import_jsonl(bad)
    assert other.import_jsonl(exported) == (1, 1)  # b0 was voted here already
    assert len(other.judgements()) == 2
    other.add_battle(battle(5))
    other.vote("b5", Vote("b", seconds_to_vote=3.5))
    assert other.export_jsonl(exported) == 3
    other.close()

    store = ArenaStore(records)  # and into this backend: the bad file changes nothing, the good one adds b5
    with pytest.raises(RagtuneError, match="nothing was imported"):
        store.import_jsonl(bad)
    assert store.import_jsonl(exported) == (1, 2)
    assert [(j.item, j.outcome) for j in store.judgements()] == [("q0", "a"), ("q1", "tie"), ("q5", "b")]
    store.close()


def test_records_written_by_a_newer_ragtune_are_refused_at_open(records):
    AnswerLog(records).close()
    ArenaStore(records).close()
    newer = AnswerLog(records)
    with newer._lock:
        newer._db.execute("UPDATE record_schemas SET version = ? WHERE name = 'answers'",
                          (AnswerLog.SCHEMA_VERSION + 1,))
    newer.close()
    with pytest.raises(RagtuneError, match="answers records .* schema version 2, written by a newer ragtune"):
        AnswerLog(records)
    ArenaStore(records).close()  # each kind of records has its own version


def test_records_from_before_schema_versions_open_as_version_one(records):
    log = AnswerLog(records)
    log.record("r1", "smollm2", "rag", [{"role": "user", "content": "question?"}], answer("kept"))
    with log._lock:
        log._db.execute("DROP TABLE record_schemas")  # as an earlier ragtune left the database
    log.close()
    reopened = AnswerLog(records)
    assert reopened.get("r1")["answer"] == "kept"
    with reopened._lock:
        assert reopened._db.execute("SELECT name, version FROM record_schemas").fetchall() == [("answers", 1)]
    reopened.close()
