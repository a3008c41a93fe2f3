"""Arena ratings on simulated votes with known strengths, and on small examples worked by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.special import expit

from ragtune.arena.ratings import (BASE_SCORE, ELO_PER_LOG_STRENGTH, Judgement, Rating, choose_pair,
                                   fit_bradley_terry, leaderboard, measure_agreement, measure_position_bias,
                                   stopping_hint)

STRENGTHS = {"alpha": 0.8, "beta": 0.3, "gamma": -0.2, "delta": -0.9}  # centred: they sum to 0


def simulate(strengths: dict[str, float], battles: int, seed: int, left_edge: float = 0.0) -> list[Judgement]:
    """Battles between random pairs, sides at random. The left side's chance q = expit(β_left − β_right +
    left_edge); 40% of min(q, 1 − q) goes to tie and both_bad (half each), taken equally from win and loss, so
    that the expected half-win share stays q: Bradley–Terry with ties as half wins is then unbiased."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    beta = np.array(list(strengths.values()))
    sides = np.array([rng.choice(len(names), 2, replace=False) for _ in range(battles)])
    chance = expit(beta[sides[:, 0]] - beta[sides[:, 1]] + left_edge)
    drawn = 0.4 * np.minimum(chance, 1 - chance)
    draw = rng.random(battles)
    outcomes = np.where(draw < chance - drawn / 2, "a", np.where(draw < chance, "tie",
                                                                 np.where(draw < chance + drawn / 2, "both_bad", "b")))
    return [Judgement(names[left], names[right], str(outcome), "rater", f"q{k}")
            for k, ((left, right), outcome) in enumerate(zip(sides, outcomes))]


def log_strength(score: float) -> float:
    return (score - BASE_SCORE) / ELO_PER_LOG_STRENGTH


def votes(left: str, right: str, outcome: str, times: int, rater: str = "r", item: str = "q") -> list[Judgement]:
    return [Judgement(left, right, outcome, rater, f"{item}{k}") for k in range(times)]


def test_the_fit_recovers_known_strengths_and_their_order():
    judgements = simulate(STRENGTHS, 600, seed=1)
    fitted = fit_bradley_terry(judgements, list(STRENGTHS))
    assert sorted(fitted, key=fitted.get, reverse=True) == list(STRENGTHS)
    assert sum(fitted.values()) == pytest.approx(0, abs=1e-9)
    # 300 battles per strategy: a standard error of about 0.1 per log-strength (0.23 at most here)
    assert max(abs(fitted[name] - strength) for name, strength in STRENGTHS.items()) < 0.3
    board = leaderboard(judgements, list(STRENGTHS), bootstrap=200)
    assert [rating.strategy for rating in board.ratings] == list(STRENGTHS)
    assert board.votes == 600 and sum(rating.battles for rating in board.ratings) == 1200
    assert all(rating.ci_low < rating.score < rating.ci_high for rating in board.ratings)
    assert log_strength(board.ratings[0].score) == pytest.approx(fitted["alpha"])


def test_95_percent_intervals_cover_the_true_strengths_about_95_percent_of_the_time():
    covered = []
    for simulation in range(200):
        board = leaderboard(simulate(STRENGTHS, 300, seed=100 + simulation), list(STRENGTHS), bootstrap=300,
                            seed=simulation)
        covered += [log_strength(rating.ci_low) <= STRENGTHS[rating.strategy] <= log_strength(rating.ci_high)
                    for rating in board.ratings]
    assert 0.90 <= np.mean(covered) <= 0.99


def test_a_thousand_resamples_of_two_thousand_votes_over_six_strategies_take_well_under_a_second():
    strengths = {"s1": 0.6, "s2": 0.3, "s3": 0.1, "s4": -0.1, "s5": -0.4, "s6": -0.5}
    judgements = simulate(strengths, 2000, seed=5)
    started = time.perf_counter()
    board = leaderboard(judgements, list(strengths), bootstrap=1000)
    assert time.perf_counter() - started < 0.5
    assert board.ratings[0].strategy == "s1"


def test_ties_and_both_bad_count_as_half_a_win_to_each_side():
    # x: 6 wins + (3 ties + 1 both_bad) / 2 = 8 of 12, so exp(β_x − β_y) = (8/12) / (4/12) = 2
    judgements = (votes("x", "y", "a", 4) + votes("y", "x", "b", 2) + votes("y", "x", "a", 2)
                  + votes("x", "y", "tie", 2) + votes("y", "x", "tie", 1) + votes("x", "y", "both_bad", 1))
    fitted = fit_bradley_terry(judgements, ["x", "y"], virtual_ties=0)
    assert fitted["x"] == pytest.approx(math.log(2) / 2, abs=1e-4)
    assert fitted["y"] == pytest.approx(-math.log(2) / 2, abs=1e-4)
    board = leaderboard(judgements, ["x", "y"], bootstrap=50)
    assert board.win_rates["x"]["y"] == pytest.approx(8 / 12) and board.win_rates["y"]["x"] == pytest.approx(4 / 12)
    assert board.counts["x"]["y"] == board.counts["y"]["x"] == 12
    assert board.win_rates["x"]["x"] is None and board.counts["x"]["x"] == 0


def test_a_strategy_that_won_every_battle_stays_finite_and_first():
    judgements = (votes("champ", "b", "a", 30) + votes("c", "champ", "b", 20) + votes("b", "c", "a", 10)
                  + votes("b", "c", "b", 8))
    fitted = fit_bradley_terry(judgements, ["champ", "b", "c"], virtual_ties=0)
    assert all(math.isfinite(value) for value in fitted.values())
    assert fitted["champ"] - max(fitted["b"], fitted["c"]) > 5
    board = leaderboard(judgements, ["champ", "b", "c"], bootstrap=200)
    assert board.ratings[0].strategy == "champ"
    assert all(math.isfinite(value) for rating in board.ratings for value in (rating.score, rating.ci_low,
                                                                              rating.ci_high))


def test_a_strategy_that_never_played_is_listed_last_at_the_base_score_without_an_interval():
    judgements = votes("x", "y", "a", 7) + votes("x", "y", "b", 3) + votes("x", "outsider", "a", 5)
    board = leaderboard(judgements, ["idle", "x", "y"], bootstrap=100)
    assert board.votes == 10  # the votes naming a strategy not listed are left out
    assert [rating.strategy for rating in board.ratings] == ["x", "y", "idle"]
    idle = board.ratings[-1]
    assert (idle.score, idle.ci_low, idle.ci_high, idle.battles) == (BASE_SCORE, BASE_SCORE, BASE_SCORE, 0)
    assert board.win_rates["idle"] == {"idle": None, "x": None, "y": None}
    assert fit_bradley_terry(judgements, ["idle", "x", "y"])["idle"] == 0.0
    assert board.ratings[0].score + board.ratings[1].score == pytest.approx(2 * BASE_SCORE)
    assert "x leads y" in board.stopping_hint


def test_a_planted_left_side_preference_is_detected():
    bias = measure_position_bias(simulate(STRENGTHS, 600, seed=2, left_edge=0.6))
    assert bias.detected and bias.p_value < 1e-4
    assert bias.left_win_share > 0.55
    fair = measure_position_bias(simulate(STRENGTHS, 600, seed=2))
    assert not fair.detected and fair.p_value > 0.05
    assert fair.decisive == sum(judgement.outcome in ("a", "b") for judgement in simulate(STRENGTHS, 600, seed=2))


def test_without_a_side_preference_false_alarms_stay_near_five_percent():
    alarms = [measure_position_bias(simulate(STRENGTHS, 300, seed=1000 + simulation)).detected
              for simulation in range(200)]
    assert np.mean(alarms) < 0.10


def test_the_position_bias_of_no_decisive_votes_is_undefined_and_not_detected():
    bias = measure_position_bias(votes("x", "y", "tie", 3))
    assert (bias.left_win_share, bias.decisive, bias.p_value, bias.detected) == (None, 0, 1.0, False)


def test_raters_who_always_agree_have_kappa_one_even_with_sides_swapped():
    first = [Judgement("x", "y", outcome, "ann", f"q{k}")
             for k, outcome in enumerate(["a", "b", "tie", "both_bad", "a", "a"])]
    swapped = {"a": "b", "b": "a", "tie": "tie", "both_bad": "both_bad"}
    second = [Judgement("y", "x", swapped[judgement.outcome], "bob", judgement.item) for judgement in first]
    agreement = measure_agreement(first + second)
    assert [(pair.raters, pair.shared, pair.kappa) for pair in agreement.pairs] == [(("ann", "bob"), 6, 1.0)]
    assert agreement.fleiss_kappa == pytest.approx(1.0) and agreement.fleiss_battles == 6
    assert [(c.rater, c.compared, c.agreeing, c.share) for c in agreement.consensus] == [("ann", 6, 6, 1.0),
                                                                                         ("bob", 6, 6, 1.0)]


def test_a_rater_voting_at_random_has_kappa_near_zero_with_a_consistent_one():
    consistent = simulate(STRENGTHS, 800, seed=3)
    outcomes = np.random.default_rng(4).choice(["a", "b", "tie", "both_bad"], len(consistent))
    random = [Judgement(j.left, j.right, str(outcome), "coin", j.item) for j, outcome in zip(consistent, outcomes)]
    [pair] = measure_agreement(consistent + random).pairs
    assert pair.shared == 800 and abs(pair.kappa) < 0.08


def test_cohen_fleiss_and_consensus_match_a_small_example_worked_by_hand():
    # verdicts on the pair (x, y): X = x better, Y = y better
    #        r1    r2        r3
    # q1     X     X         X
    # q2     X     X         Y
    # q3     Y     Y         tie
    # q4     tie   both_bad  X
    # q5     X     -         -       (one rater: no agreement to measure)
    rows = {"q1": ("a", "a", "a"), "q2": ("a", "a", "b"), "q3": ("b", "b", "tie"), "q4": ("tie", "both_bad", "a"),
            "q5": ("a", None, None)}
    judgements = [Judgement("x", "y", outcome, rater, item) for item, outcomes in rows.items()
                  for rater, outcome in zip(("r1", "r2", "r3"), outcomes) if outcome]
    agreement = measure_agreement(judgements)
    kappas = {pair.raters: (pair.shared, pair.kappa) for pair in agreement.pairs}
    # r1 and r2 agree on 3 of 4; both have margins X 2, Y 1, one of tie / both_bad: p_e = 4/16 + 1/16 = 5/16,
    # κ = (3/4 − 5/16) / (1 − 5/16) = 7/11
    assert kappas[("r1", "r2")] == (4, pytest.approx(7 / 11))
    # Fleiss over q1–q4: P_i = 1, 1/3, 1/3, 0, mean 5/12; shares X 6/12, Y 3/12, tie 2/12, both_bad 1/12:
    # P_e = (36 + 9 + 4 + 1) / 144 = 25/72, κ = (5/12 − 25/72) / (1 − 25/72) = 5/47
    assert agreement.fleiss_kappa == pytest.approx(5 / 47) and agreement.fleiss_battles == 4
    # consensus (more than half of the other raters): r1 has one on q1 only (agrees); r3 on q1 (agrees),
    # q2 (X against its Y) and q3 (Y against its tie)
    consensus = {c.rater: (c.compared, c.agreeing, c.share) for c in agreement.consensus}
    assert consensus["r1"] == (1, 1, 1.0) and consensus["r2"] == (1, 1, 1.0)
    assert consensus["r3"] == (3, 1, pytest.approx(1 / 3))


def test_kappa_is_undefined_when_both_raters_always_gave_the_same_single_verdict():
    judgements = votes("x", "y", "a", 3, rater="ann") + votes("x", "y", "a", 3, rater="bob")
    agreement = measure_agreement(judgements)
    assert agreement.pairs[0].kappa is None and agreement.fleiss_kappa is None
    assert measure_agreement(votes("x", "y", "a", 3)).fleiss_kappa is None  # no battle has two raters


def test_choose_pair_puts_uncompared_pairs_first_then_the_closest():
    judgements = votes("a", "b", "a", 10) + votes("a", "b", "b", 10) + votes("a", "c", "a", 20)
    assert choose_pair(judgements, ["a", "b", "c"]) == [("b", "c"), ("a", "b"), ("a", "c")]
    # a perfect record reads as clearly ordered, not as endlessly uncertain
    judgements = votes("a", "b", "a", 40) + votes("a", "b", "b", 35) + votes("a", "c", "a", 20)
    assert choose_pair(judgements, ["a", "b", "c"])[1:] == [("a", "b"), ("a", "c")]


def test_choose_pair_orders_uncompared_pairs_by_the_fewest_battles_of_their_strategies():
    judgements = votes("a", "b", "a", 10) + votes("c", "a", "tie", 4)
    pairs = choose_pair(judgements, ["a", "b", "c", "d"])
    # battles: a 14, b 10, c 4, d 0
    assert pairs[:4] == [("c", "d"), ("b", "d"), ("a", "d"), ("b", "c")]
    assert sorted(pairs[4:]) == [("a", "b"), ("a", "c")]
    assert choose_pair([], ["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]


def rating(strategy: str, score: float, low: float, high: float) -> Rating:
    return Rating(strategy, score, low, high, battles=50)


def test_stopping_hint_when_the_leader_is_separated():
    hint = stopping_hint([rating("x", 1150, 1100, 1200), rating("y", 1040, 1000, 1090)], votes=100)
    assert "x leads y" in hint and "separated" in hint and "[1100, 1200]" in hint


def test_stopping_hint_estimates_the_votes_that_would_separate_the_leader():
    # facing half-widths 45 + 45 over a gap of 60: 100 · (90/60)² − 100 = 125 more votes
    ratings = [rating("x", 1100, 1055, 1145), rating("y", 1040, 995, 1085)]
    assert "about 125 more votes" in stopping_hint(ratings, votes=100)
    assert "x leads y by 60 points" in stopping_hint(ratings, votes=100)
    assert "about 9 more votes" in stopping_hint(ratings, votes=7)  # 7 · 1.25 = 8.75, rounded up


def test_stopping_hint_when_nothing_separates_or_nothing_is_known():
    level = stopping_hint([rating("x", 1000, 950, 1050), rating("y", 1000, 950, 1050)], votes=40)
    assert "x and y" in level and "no difference" in level and "no number" in level
    assert "two strategies" in stopping_hint([rating("x", 1000, 1000, 1000)], votes=0)
    assert "No votes" in stopping_hint([rating("x", 1000, 1000, 1000), rating("y", 1000, 1000, 1000)], votes=0)


def test_the_leaderboard_is_json_ready():
    import json

    judgements = simulate(STRENGTHS, 60, seed=6)
    judgements.append(Judgement(judgements[0].right, judgements[0].left, "b", "second", judgements[0].item))
    result = json.loads(json.dumps(leaderboard(judgements, list(STRENGTHS), bootstrap=20).to_dict(),
                                   allow_nan=False))
    assert result["votes"] == 61 and result["agreement"]["pairs"][0]["raters"] == ["rater", "second"]
    assert set(result) == {"ratings", "win_rates", "counts", "position_bias", "agreement", "stopping_hint", "votes"}


def test_a_single_vote_gives_wide_intervals_not_certainty():
    board = leaderboard([Judgement("rag", "base", "a", "ana", "q1")], ["rag", "base"], bootstrap=200)
    leader, runner = board.ratings
    assert leader.strategy == "rag" and leader.ci_low < runner.ci_high  # one vote separates nothing
    assert leader.ci_high - leader.ci_low > 400 and "overlap" in board.stopping_hint


def test_strategies_never_linked_by_battles_are_said_to_be_incomparable():
    judgements = votes("a", "b", "a", 6) + votes("c", "d", "a", 3) + votes("c", "d", "b", 1)
    board = leaderboard(judgements, ["a", "b", "c", "d"], bootstrap=100)
    assert [rating.strategy for rating in board.ratings[:2]] == ["a", "c"]
    assert board.stopping_hint.startswith("a and c were never compared")
    assert all(rating.ci_high - rating.ci_low < 2000 for rating in board.ratings)  # each group's own intervals
