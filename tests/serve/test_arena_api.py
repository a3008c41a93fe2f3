"""The arena's API on a live server, called with httpx: battles from a comparison and live, votes, the
leaderboard, and input it refuses."""

from __future__ import annotations

import httpx
import pytest

from ragtune.arena.battles import ComparedAnswers
from ragtune.arena.store import ArenaStore
from ragtune.serve.app import create_app

from arena_helpers import write_comparison
from serve_helpers import make_state, start_live


@pytest.fixture
def arena_server(served_project, tmp_path):
    comparison = write_comparison(tmp_path / "cmp")
    state = make_state(served_project, api_key="secret", reply="Live answer from the scripted engine [1].")
    state.arena = ArenaStore(served_project.workspace.database_path)
    state.compared = ComparedAnswers(comparison)
    base_url, server = start_live(create_app(state))
    client = httpx.Client(base_url=base_url, headers={"Authorization": "Bearer secret"}, timeout=30)
    yield client, state
    client.close()
    server.should_exit = True
    state.arena.close()


def test_a_battle_hides_the_strategies_until_the_vote_reveals_them(arena_server):
    client, state = arena_server
    battle = client.post("/v1/arena/battles", json={"rater": "ana"}).json()
    assert set(battle) == {"battle_id", "question", "answers"}
    slots = [answer["slot"] for answer in battle["answers"]]
    assert slots == ["A", "B"] and all(answer["citations"] for answer in battle["answers"])
    assert all(set(answer) == {"slot", "content", "citations"} for answer in battle["answers"])  # no names
    vote = client.post(f"/v1/arena/battles/{battle['battle_id']}/vote",
                       json={"outcome": "b", "reason": "cites its source", "rating_a": 2, "rating_b": 4}).json()
    revealed = vote["strategies"]
    assert battle["answers"][0]["content"].startswith(f"{revealed['A']} says")  # the reveal matches what was shown
    assert vote["reference"] and vote["votes_by_rater"] == 1
    stored = state.arena.voted()[0]
    assert stored[1].outcome == "b" and stored[1].rating_b == 4 and stored[0].strategy_a == revealed["A"]

    again = client.post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"outcome": "a"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
    board = client.get("/v1/arena/leaderboard").json()
    assert board["votes"] == 1 and board["ratings"][0]["strategy"] == revealed["B"]


def test_a_live_battle_answers_a_typed_question_with_two_served_strategies(arena_server):
    client, state = arena_server
    battle = client.post("/v1/arena/battles", json={"rater": "ana", "question": "Which volcano is the tallest?"})
    assert battle.status_code == 200, battle.text
    shown = battle.json()
    assert shown["question"] == "Which volcano is the tallest?"
    assert [answer["content"] for answer in shown["answers"]] == ["Live answer from the scripted engine [1]."] * 2
    vote = client.post(f"/v1/arena/battles/{shown['battle_id']}/vote", json={"outcome": "tie"}).json()
    assert set(vote["strategies"].values()) <= set(state.catalog.models) and vote["reference"] is None


def test_the_api_refuses_what_it_should(arena_server):
    client, _ = arena_server
    assert httpx.post(f"{client.base_url}/v1/arena/battles", json={"rater": "ana"}).status_code == 401
    assert client.post("/v1/arena/battles", json={"rater": "<img src=x onerror=alert(1)>"}).status_code == 400
    assert client.post("/v1/arena/battles", json={"rater": "ana", "extra": 1}).status_code == 400
    missing = client.post("/v1/arena/battles/battle-nope/vote", json={"outcome": "a"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "battle_not_found"
    battle = client.post("/v1/arena/battles", json={"rater": "ana"}).json()
    assert client.post(f"/v1/arena/battles/{battle['battle_id']}/vote",
                       json={"outcome": "maybe"}).status_code == 400
    assert client.post(f"/v1/arena/battles/{battle['battle_id']}/vote",
                       json={"outcome": "a", "rating_a": 9}).status_code == 400


def test_the_comparison_runs_out_of_battles_for_a_rater(arena_server):
    client, _ = arena_server
    for _ in range(15):  # 5 questions x 3 pairs
        battle = client.post("/v1/arena/battles", json={"rater": "ana"}).json()
        client.post(f"/v1/arena/battles/{battle['battle_id']}/vote", json={"outcome": "a"})
    done = client.post("/v1/arena/battles", json={"rater": "ana"})
    assert done.status_code == 409 and done.json()["error"]["code"] == "arena_exhausted"
    assert client.post("/v1/arena/battles", json={"rater": "ben"}).status_code == 200
