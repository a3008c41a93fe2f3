"""Battles from a comparison (pair choice, no repeats, random sides), the terminal arena, votes exchanged between
projects, and human preference in the comparison's report and recommendation."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from ragtune.arena.battles import ComparedAnswers
from ragtune.arena.store import AlreadyVoted, ArenaStore, Vote, votes_database
from ragtune.cli import app
from ragtune.errors import RagtuneError
from ragtune.evaluation.advise import readvise

from arena_helpers import QUESTIONS, answer_of, write_comparison


@pytest.fixture
def comparison(tmp_path):
    return write_comparison(tmp_path / "cmp")


@pytest.fixture
def store(comparison):
    opened = ArenaStore(votes_database(None, comparison))
    yield opened
    opened.close()


def vote_for(store, battle, strategy: str | None, rater_reason: str | None = None):
    """Vote for `strategy` (None: a tie) on `battle`."""
    outcome = "tie" if strategy is None else "a" if battle.strategy_a == strategy else "b"
    return store.vote(battle.id, Vote(outcome, rater_reason))


def test_battles_cover_every_pair_never_repeat_and_draw_sides_at_random(comparison, store):
    compared = ComparedAnswers(comparison)
    rng = random.Random(1)
    seen, left_sides = set(), set()
    while (battle := compared.next_battle(store, "ana", rng)) is not None:
        key = (battle.item, frozenset((battle.strategy_a, battle.strategy_b)))
        assert key not in seen  # a rater never judges the same question and pair twice
        seen.add(key)
        assert battle.answer_a == answer_of(battle.strategy_a, battle.item)
        assert battle.citations_a[0]["source"] == f"{battle.item}.txt" and battle.reference
        shown = battle.shown()
        assert set(shown) == {"battle_id", "question", "answers"}  # no strategy names before the vote
        assert all(set(answer) == {"slot", "content", "citations"} for answer in shown["answers"])
        left_sides.add(battle.strategy_a)
        vote_for(store, battle, "rag")
    assert len(seen) == len(QUESTIONS) * 3  # 3 pairs of 3 strategies
    assert left_sides == {"base", "rag", "ft"}
    # another rater starts afresh
    assert compared.next_battle(store, "ben", rng) is not None


def test_the_next_battle_goes_to_a_pair_not_yet_compared(comparison, store):
    compared = ComparedAnswers(comparison)
    rng = random.Random(0)
    first = compared.next_battle(store, "ana", rng)
    vote_for(store, first, first.strategy_a)
    pairs = {frozenset((first.strategy_a, first.strategy_b))}
    for _ in range(2):
        battle = compared.next_battle(store, "ana", rng)
        pair = frozenset((battle.strategy_a, battle.strategy_b))
        assert pair not in pairs
        pairs.add(pair)
        vote_for(store, battle, battle.strategy_a)


def test_a_battle_takes_one_vote(comparison, store):
    battle = ComparedAnswers(comparison).next_battle(store, "ana", random.Random(0))
    store.vote(battle.id, Vote("a"))
    with pytest.raises(AlreadyVoted):
        store.vote(battle.id, Vote("b"))


def test_export_import_merges_without_duplicates_and_a_bad_file_changes_nothing(tmp_path):
    first, second = write_comparison(tmp_path / "one"), write_comparison(tmp_path / "two")
    for directory, rater in ((first, "ana"), (second, "ben")):
        store = ArenaStore(votes_database(None, directory))
        compared = ComparedAnswers(directory)
        for _ in range(4):
            vote_for(store, compared.next_battle(store, rater, random.Random(rater)), "rag")
        store.close()
    runner = CliRunner()
    exported = tmp_path / "ana.jsonl"
    assert runner.invoke(app, ["arena", "export", str(exported), "--from-compare", str(first)]).exit_code == 0
    assert len(exported.read_text().splitlines()) == 4
    result = runner.invoke(app, ["arena", "import", str(exported), "--from-compare", str(second)])
    assert result.exit_code == 0 and "4 vote(s) added, 0 already here" in result.output
    result = runner.invoke(app, ["arena", "import", str(exported), "--from-compare", str(second)])
    assert "0 vote(s) added, 4 already here" in result.output
    merged = ArenaStore(votes_database(None, second))
    assert sorted(j.rater for j in merged.judgements()) == ["ana"] * 4 + ["ben"] * 4

    lines = exported.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["vote"]["outcome"] = "maybe"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0].replace('"ana"', '"cleo"'), json.dumps(broken)]) + "\n")
    with pytest.raises(RagtuneError, match=r"bad.jsonl:2: missing or invalid vote.outcome"):
        merged.import_jsonl(bad)
    bad.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(RagtuneError, match=r"bad.jsonl:2: not valid JSON"):
        merged.import_jsonl(bad)
    assert len(merged.judgements()) == 8  # nothing written, nothing lost
    result = runner.invoke(app, ["arena", "import", str(bad), "--from-compare", str(second)])
    assert result.exit_code == 1 and "bad.jsonl:2" in result.output
    merged.close()


def test_the_terminal_arena_is_driven_by_its_input_and_reveals_after_each_vote(comparison):
    runner = CliRunner()
    result = runner.invoke(app, ["arena", "--from-compare", str(comparison), "--rater", "ana", "--seed", "4"],
                           input="a\nclearer\nt\n\ns\nq\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("A was ") == 2 and "2 vote(s) stored" in result.output
    store = ArenaStore(votes_database(None, comparison))
    votes = store.voted()
    store.close()
    assert [vote.outcome for _, vote in votes] == ["a", "tie"] and votes[0][1].reason == "clearer"
    battle = votes[0][0]
    assert f"A was {battle.strategy_a}, B was {battle.strategy_b}" in result.output
    bad = runner.invoke(app, ["arena", "--from-compare", str(comparison), "--rater", "<script>"])
    assert bad.exit_code == 1 and "not allowed" in bad.output


def test_votes_reach_the_comparison_report_and_settle_a_metric_tie(comparison, store):
    before = readvise(comparison)
    assert before.recommendation.verdict == "inconclusive" and before.human_evaluation is None
    compared = ComparedAnswers(comparison)
    rng = random.Random(5)
    for rater in ("ana", "ben"):
        while (battle := compared.next_battle(store, rater, rng)) is not None:
            pair = {battle.strategy_a, battle.strategy_b}
            vote_for(store, battle, "rag" if "rag" in pair else None)  # people prefer rag; base and ft tie
    result = CliRunner().invoke(app, ["arena", "report", "--from-compare", str(comparison), "--json"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.output)
    assert board["ratings"][0]["strategy"] == "rag" and board["votes"] == 30

    after = readvise(comparison)
    assert after.human_evaluation.ratings[0].strategy == "rag"
    advice = after.recommendation
    assert advice.verdict == "recommended" and advice.strategy == "rag"
    assert any(reason.text.startswith("People prefer rag in 30 blind arena votes") for reason in advice.reasons)
    report = (comparison / "report.md").read_text()
    assert "## Human evaluation (30 blind votes)" in report and "### Win rates" in report
    assert "Human evaluation" in (comparison / "report.html").read_text()
    assert (comparison / "plots" / "human_ratings.png").is_file()
    assert json.loads((comparison / "results.json").read_text())["human_evaluation"]["votes"] == 30


def test_a_disagreement_between_people_and_the_metric_is_stated_with_both_numbers(tmp_path):
    comparison = write_comparison(tmp_path / "cmp", f1={"base": 0.1, "rag": 0.9, "ft": 0.1})
    from ragtune.evaluation.results import Results

    results = Results.load(comparison)
    # a comparison whose test set separates rag on F1: paired tests recorded as significant
    per_question = [row.model_copy(update={"answers": {
        name: answer.model_copy(update={"scores": {"f1": 0.9 if name == "rag" else 0.1}})
        for name, answer in row.answers.items()}}) for row in results.per_question]
    results.model_copy(update={"per_question": per_question * 4}).save(comparison)
    store = ArenaStore(votes_database(None, comparison))
    compared = ComparedAnswers(comparison)
    rng = random.Random(2)
    for rater in ("ana", "ben", "cleo"):
        while (battle := compared.next_battle(store, rater, rng)) is not None:
            pair = {battle.strategy_a, battle.strategy_b}
            vote_for(store, battle, "ft" if "ft" in pair else "base")  # people prefer ft, then base
    store.close()
    advice = readvise(comparison).recommendation
    assert advice.strategy == "rag"
    disagreement = next(reason.text for reason in advice.reasons if reason.text.startswith("People and F1 disagree"))
    assert "people rate ft" in disagreement and "above rag" in disagreement and "significantly" in disagreement
    assert "F1 gives rag 0.90" in disagreement


def test_a_strategy_nobody_judged_is_never_preferred_or_beaten_by_people(comparison, store):
    compared = ComparedAnswers(comparison)
    rng = random.Random(3)
    for rater in ("ana", "ben", "cleo"):
        while (battle := compared.next_battle(store, rater, rng)) is not None:
            pair = {battle.strategy_a, battle.strategy_b}
            if pair == {"rag", "base"}:
                vote_for(store, battle, "rag")
    advice = readvise(comparison).recommendation
    assert advice.verdict == "inconclusive"  # ft was never judged: people's preference cannot settle the tie
    assert any(reason.text.startswith("Human votes:") for reason in advice.what_would_decide)


def test_two_windows_of_one_rater_get_different_battles(comparison, store):
    compared = ComparedAnswers(comparison)
    first = compared.next_battle(store, "ana", random.Random(0))
    second = compared.next_battle(store, "ana", random.Random(0))
    assert (first.item, {first.strategy_a, first.strategy_b}) != (second.item, {second.strategy_a, second.strategy_b})


def test_votes_on_battles_known_here_without_a_vote_are_imported_and_bad_fields_named(comparison, store, tmp_path):
    battle = ComparedAnswers(comparison).next_battle(store, "ana", random.Random(0))
    exported = tmp_path / "one.jsonl"
    store.vote(battle.id, Vote("a"))
    store.export_jsonl(exported)
    other = write_comparison(tmp_path / "other")
    target = ArenaStore(votes_database(None, other))
    target.add_battle(battle)  # the battle was copied here, its vote was not
    assert target.import_jsonl(exported) == (1, 0) and len(target.judgements()) == 1
    record = json.loads(exported.read_text())
    record["vote"]["voted_at"] = None
    exported.write_text(json.dumps(record) + "\n")
    with pytest.raises(RagtuneError, match=r"one.jsonl:1: missing or invalid vote.voted_at"):
        target.import_jsonl(exported)
    target.close()
    result = CliRunner().invoke(app, ["arena", "report", "--from-compare", str(other), "--project", str(other)])
    assert result.exit_code == 1 and "pass one" in result.output
