"""Ratings from blind pairwise votes: Bradley–Terry strengths with bootstrap intervals, the left-side bias of the
votes, the agreement between raters, which pair to judge next, and how many more votes would settle the lead.

A vote counts only between two different strategies that are both in the `strategies` given; votes naming any
other strategy are left out of everything (ratings, vote counts, bias, agreement)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from scipy.stats import binomtest, norm

Outcome = Literal["a", "b", "tie", "both_bad"]
OUTCOMES: tuple[str, ...] = ("a", "b", "tie", "both_bad")

ELO_PER_LOG_STRENGTH = 400 / math.log(10)  # score = BASE_SCORE + ELO_PER_LOG_STRENGTH · log-strength
BASE_SCORE = 1000.0
CONFIDENCE = 0.95
SIGNIFICANCE_LEVEL = 0.05
# A Gaussian prior N(0, 100²) on every log-strength (a ridge of 1e-4): it only keeps a strategy that won (or lost)
# every battle finite, at about ±log(battles / 1e-4); elsewhere it moves a log-strength by ~1e-4 / battles.
PRIOR_PRECISION = 1e-4
# The leaderboard's and choose_pair's fits add one virtual tied battle to every compared pair (a pseudo-count):
# with the prior alone a perfect record's strength difference and standard error both grow without bound, so one
# vote would read as a 1,400-point lead; with it, one vote moves a pair ~190 points apart with a wide interval.
# Against tens of votes per pair its pull toward equality is a few percent.
VIRTUAL_TIES_PER_PAIR = 1.0
_NEWTON_STEPS = 100
_STEP_SIZES = np.append(0.5 ** np.arange(16), 0.0)  # the line search's fractions of a Newton step
_CONVERGED = 1e-8  # the largest Newton step of a log-strength once converged


@dataclass(frozen=True)
class Judgement:
    left: str  # the strategy shown as A
    right: str  # the strategy shown as B
    outcome: Outcome
    rater: str
    item: str  # the question's id: the same item and unordered pair is the same battle, for agreement


@dataclass
class Rating:
    strategy: str
    score: float  # BASE_SCORE + ELO_PER_LOG_STRENGTH · the centred Bradley–Terry log-strength
    ci_low: float  # 95% percentile-bootstrap interval of the score; equal to the score without battles
    ci_high: float
    battles: int


@dataclass
class PositionBias:
    left_win_share: float | None  # share of the decisive votes (a or b) won by the left side; None without any
    decisive: int
    p_value: float  # two-sided exact binomial test against 0.5
    detected: bool  # p_value < SIGNIFICANCE_LEVEL


@dataclass
class PairAgreement:
    raters: tuple[str, str]
    shared: int  # battles both judged
    kappa: float | None  # Cohen's kappa on them; None where undefined (both always gave one and the same verdict)


@dataclass
class RaterConsensus:
    rater: str
    compared: int  # the rater's battles on which more than half of the other raters gave one verdict
    agreeing: int  # how many of those the rater gave that verdict on
    share: float | None  # agreeing / compared; None when compared is 0


@dataclass
class Agreement:
    pairs: list[PairAgreement]  # every pair of raters who share a battle
    fleiss_kappa: float | None  # over battles judged by two raters or more; None when there are none, or undefined
    fleiss_battles: int
    consensus: list[RaterConsensus]


@dataclass
class Leaderboard:
    ratings: list[Rating]  # best first; strategies without battles last, in the order given
    win_rates: dict[str, dict[str, float | None]]  # row beats column (ties and both_bad half); None if never met
    counts: dict[str, dict[str, int]]  # battles per pair, symmetric
    position_bias: PositionBias
    agreement: Agreement
    stopping_hint: str
    votes: int

    def to_dict(self) -> dict:
        """The leaderboard as JSON-ready dicts and lists."""
        result = asdict(self)
        for pair in result["agreement"]["pairs"]:
            pair["raters"] = list(pair["raters"])
        return result


@dataclass
class _Tally:
    """The counted votes, grouped into cells: each distinct kind of vote (who beat whom, or a tie or both_bad
    between whom) as its (half-)wins matrix, row beats column, and the number of votes of that kind."""

    strategies: list[str]
    counted: list[Judgement]
    cells: np.ndarray  # (kinds, S, S)
    cell_votes: np.ndarray  # (kinds,)

    def wins(self) -> np.ndarray:
        return np.tensordot(self.cell_votes, self.cells, 1)


def _tally(judgements: list[Judgement], strategies: list[str]) -> _Tally:
    names = list(dict.fromkeys(strategies))
    index = {name: position for position, name in enumerate(names)}
    size = len(names)
    counted, codes = [], []
    for judgement in judgements:
        if judgement.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {judgement.outcome!r}: one of {', '.join(OUTCOMES)}")
        if judgement.left == judgement.right or judgement.left not in index or judgement.right not in index:
            continue
        left, right = index[judgement.left], index[judgement.right]
        counted.append(judgement)
        if judgement.outcome == "a":
            codes.append(left * size + right)
        elif judgement.outcome == "b":
            codes.append(right * size + left)
        else:
            codes.append(size * size + min(left, right) * size + max(left, right))
    kinds, cell_votes = np.unique(np.array(codes, dtype=np.int64), return_counts=True)
    tie = kinds >= size * size
    winner, loser = np.divmod(kinds % (size * size), size)
    cells = np.zeros((len(kinds), size, size))
    cells[np.arange(len(kinds)), winner, loser] = np.where(tie, 0.5, 1.0)
    cells[np.flatnonzero(tie), loser[tie], winner[tie]] = 0.5
    return _Tally(names, counted, cells, cell_votes.astype(float))


def _information(beta: np.ndarray, battles: np.ndarray) -> np.ndarray:
    """The observed Fisher information of the log-strengths (with the prior's), shape (..., S, S)."""
    chance = expit(beta[..., :, None] - beta[..., None, :])
    weights = battles * chance * (1 - chance)
    size = beta.shape[-1]
    return (np.eye(size) * (weights.sum(-1) + PRIOR_PRECISION)[..., None, :]) - weights


def _log_posterior(beta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    difference = beta[..., :, None] - beta[..., None, :]
    return -(wins * np.logaddexp(0, -difference)).sum((-2, -1)) - PRIOR_PRECISION / 2 * (beta ** 2).sum(-1)


def _fit(wins: np.ndarray) -> np.ndarray:
    """Centred maximum-a-posteriori log-strengths for a stack of (half-)wins matrices (..., S, S), all at once:
    Newton's method, falling back to the best of a range of fractions of the step where the full step would lower
    the posterior."""
    shape = wins.shape[:-1]
    wins = wins.reshape(math.prod(wins.shape[:-2]), *wins.shape[-2:])
    battles = wins + wins.swapaxes(-1, -2)
    won = wins.sum(-1)
    beta = np.zeros(wins.shape[:-1])
    for _ in range(_NEWTON_STEPS if beta.size else 0):
        gradient = won - (battles * expit(beta[:, :, None] - beta[:, None, :])).sum(-1) - PRIOR_PRECISION * beta
        step = np.linalg.solve(_information(beta, battles), gradient[..., None])[..., 0]
        if np.abs(step).max() < _CONVERGED:
            break
        current = _log_posterior(beta, wins)
        full = beta + step
        overshot = _log_posterior(full, wins) < current - 1e-12 * (1 + np.abs(current))
        if overshot.any():
            candidates = beta[overshot, None, :] + _STEP_SIZES[:, None] * step[overshot, None, :]
            best = _STEP_SIZES[_log_posterior(candidates, wins[overshot, None]).argmax(-1)]
            full[overshot] = beta[overshot] + best[:, None] * step[overshot]
        beta = full
    played = battles.sum(-1) > 0
    mean = (beta * played).sum(-1, keepdims=True) / np.maximum(played.sum(-1, keepdims=True), 1)
    return np.where(played, beta - mean, 0.0).reshape(shape)


def fit_bradley_terry(judgements: list[Judgement], strategies: list[str], *,
                      virtual_ties: float = VIRTUAL_TIES_PER_PAIR) -> dict[str, float]:
    """Bradley–Terry log-strengths by maximum likelihood, a tie or both_bad counting as half a win to each side,
    with `virtual_ties` tied battles added to each compared pair (0: the plain likelihood), centred to mean 0 over
    the strategies that played (groups of strategies never linked by battles are each centred on their own: nothing
    in the votes relates them); the leaderboard's scores.

    A strategy that never played gets 0. The tiny Gaussian prior of PRIOR_PRECISION keeps a strategy that won or
    lost every battle finite without virtual ties (the likelihood alone would send it to ±infinity)."""
    tally = _tally(judgements, strategies)
    return dict(zip(tally.strategies, _fit(_with_virtual_ties(tally.wins(), virtual_ties)).tolist()))


def _score(beta: float) -> float:
    return BASE_SCORE + ELO_PER_LOG_STRENGTH * float(beta)


def _with_virtual_ties(wins: np.ndarray, ties: float = VIRTUAL_TIES_PER_PAIR) -> np.ndarray:
    """(Half-)wins matrices (..., S, S) with `ties` tied battles added to every compared pair."""
    return wins + ties / 2 * ((wins + wins.swapaxes(-1, -2)) > 0)


def _wald_bounds(wins: np.ndarray, battles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wald bounds of the centred log-strengths from the observed Fisher information of the fit with virtual
    ties (unplayed strategies: their 0)."""
    compared = battles > 0
    beta = _fit(_with_virtual_ties(wins))
    information = _information(beta, battles + VIRTUAL_TIES_PER_PAIR * compared)
    margin = np.zeros_like(beta)
    _, group = connected_components(compared, directed=False)
    for members in (np.flatnonzero(group == label) for label in np.unique(group)):
        if len(members) < 2:  # a strategy without battles has no interval
            continue
        centring = np.eye(len(members)) - 1 / len(members)  # each linked group is centred on its own, as fitted
        covariance = centring @ np.linalg.inv(information[np.ix_(members, members)]) @ centring
        margin[members] = norm.ppf(1 - (1 - CONFIDENCE) / 2) * np.sqrt(np.diag(covariance))
    return beta - margin, beta + margin


def judged_strategies(judgements: list[Judgement], known: list[str] = ()) -> list[str]:
    """The strategies to rank: the `known` ones (a comparison's, judged or not) first, then any other a vote names."""
    return list(dict.fromkeys([*known, *(name for j in judgements for name in (j.left, j.right))]))


def leaderboard(judgements: list[Judgement], strategies: list[str], *, bootstrap: int = 1000,
                seed: int = 0) -> Leaderboard:
    """Ratings with 95% intervals, pairwise win rates and counts, the left-side bias, the raters' agreement, and a
    hint on when to stop voting.

    Scores are the Bradley-Terry fit with VIRTUAL_TIES_PER_PAIR (see there). An interval is the percentile
    bootstrap's (votes resampled with replacement and refit), widened where needed to the Wald interval: with few
    votes every resample can be the same (one vote: a zero-width interval), and the Wald interval then says how
    little they show; with many votes the two agree.

    A strategy without battles has no interval: its ci_low and ci_high equal its score (BASE_SCORE), battles is 0,
    and it is listed last."""
    if bootstrap < 1:
        raise ValueError("bootstrap needs at least one resample")
    tally = _tally(judgements, strategies)
    names, votes = tally.strategies, len(tally.counted)
    wins = tally.wins()
    battles = wins + wins.T
    beta = _fit(_with_virtual_ties(wins))
    if votes:
        resampled = np.random.default_rng(seed).multinomial(votes, tally.cell_votes / votes, size=bootstrap)
        samples = _fit(_with_virtual_ties(np.tensordot(resampled.astype(float), tally.cells, 1)))
        tail = 100 * (1 - CONFIDENCE) / 2
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
        wald_low, wald_high = _wald_bounds(wins, battles)
        low, high = np.minimum(low, wald_low), np.maximum(high, wald_high)
    else:
        low, high = beta, beta
    played = battles.sum(1)
    ratings = [Rating(name, _score(beta[k]), _score(low[k]), _score(high[k]), int(played[k]))
               for k, name in enumerate(names)]
    ratings.sort(key=lambda rating: (rating.battles == 0, -rating.score if rating.battles else 0.0))
    win_rates = {row: {column: float(wins[i, j] / battles[i, j]) if battles[i, j] else None
                       for j, column in enumerate(names)} for i, row in enumerate(names)}
    counts = {row: {column: int(battles[i, j]) for j, column in enumerate(names)} for i, row in enumerate(names)}
    _, group = connected_components(battles > 0, directed=False)
    group_of = dict(zip(names, group))
    hint = stopping_hint(ratings, votes)
    if len(ratings) > 1 and ratings[1].battles and group_of[ratings[0].strategy] != group_of[ratings[1].strategy]:
        hint = (f"{ratings[0].strategy} and {ratings[1].strategy} were never compared, directly or through other "
                "strategies, so their ratings say nothing about each other yet: vote on battles between them.")
    return Leaderboard(ratings, win_rates, counts, measure_position_bias(tally.counted),
                       measure_agreement(tally.counted), hint, votes)


def stopping_hint(ratings: list[Rating], votes: int) -> str:
    """One sentence on whether the leader and the runner-up (the first two of `ratings`, best first) are separated
    by their 95% intervals, and if not, about how many more votes (over all pairs, at the current mix) would
    separate them: interval half-widths taken to shrink as 1/sqrt(votes), the halves that face each other
    (the leader's lower, the runner-up's upper) must together shrink below the gap."""
    if len(ratings) < 2:
        return "Ratings need at least two strategies: add another strategy to the arena."
    if votes == 0:
        return "No votes yet: judge a few battles so that the strategies can be rated."
    leader, runner = ratings[0], ratings[1]
    if leader.ci_low > runner.ci_high:
        return (f"{leader.strategy} leads {runner.strategy} and their 95% intervals are separated "
                f"([{leader.ci_low:.0f}, {leader.ci_high:.0f}] and [{runner.ci_low:.0f}, {runner.ci_high:.0f}]).")
    gap = leader.score - runner.score
    if gap < 1e-9:
        return (f"{leader.strategy} and {runner.strategy} are level at {leader.score:.0f}: the current {votes} votes "
                "show no difference between them, so no number of further votes can be promised to separate them.")
    facing = (leader.score - leader.ci_low) + (runner.ci_high - runner.score)
    needed = max(1, math.ceil(votes * (facing / gap) ** 2 - votes))
    return (f"{leader.strategy} leads {runner.strategy} by {gap:.0f} points but their 95% intervals overlap; "
            f"about {needed} more votes (over all pairs, at the current mix) would separate them.")


def measure_position_bias(judgements: list[Judgement]) -> PositionBias:
    """The share of decisive votes (a or b) won by the left side, with a two-sided exact binomial test against
    0.5: a bias is detected at p < SIGNIFICANCE_LEVEL."""
    left_wins = sum(judgement.outcome == "a" for judgement in judgements)
    decisive = left_wins + sum(judgement.outcome == "b" for judgement in judgements)
    if not decisive:
        return PositionBias(None, 0, 1.0, False)
    p_value = float(binomtest(left_wins, decisive, 0.5).pvalue)
    return PositionBias(left_wins / decisive, decisive, p_value, p_value < SIGNIFICANCE_LEVEL)


_VERDICTS = ("first", "second", "tie", "both_bad")  # first and second: the pair's strategies in sorted order


def _verdicts(judgements: list[Judgement]) -> dict[tuple[str, str, str], dict[str, int]]:
    """Battle (item, first strategy, second strategy) → rater → verdict index; a rater's latest vote counts."""
    battles: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for judgement in judgements:
        first, second = sorted((judgement.left, judgement.right))
        if judgement.outcome in ("a", "b"):
            winner = judgement.left if judgement.outcome == "a" else judgement.right
            verdict = "first" if winner == first else "second"
        else:
            verdict = judgement.outcome
        battles[(judgement.item, first, second)][judgement.rater] = _VERDICTS.index(verdict)
    return battles


def _cohen_kappa(first: np.ndarray, second: np.ndarray) -> float | None:
    observed = float(np.mean(first == second))
    expected = float(np.dot(np.bincount(first, minlength=len(_VERDICTS)),
                            np.bincount(second, minlength=len(_VERDICTS)))) / len(first) ** 2
    return None if math.isclose(expected, 1.0) else (observed - expected) / (1 - expected)


def _fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa of a (battles, verdicts) table of vote counts, each battle with two votes or more; a battle's
    agreement counts equally whatever its number of raters."""
    if not len(table):
        return None
    raters = table.sum(1)
    observed = float(np.mean(((table ** 2).sum(1) - raters) / (raters * (raters - 1))))
    shares = table.sum(0) / raters.sum()
    expected = float((shares ** 2).sum())
    return None if math.isclose(expected, 1.0) else (observed - expected) / (1 - expected)


def measure_agreement(judgements: list[Judgement]) -> Agreement:
    """Agreement between raters on the same battles (same item, same unordered pair, either side order), with the
    verdicts: the pair's first strategy better, the second better, tie, both_bad. A rater's latest vote on a
    battle counts. Cohen's kappa per pair of raters on their shared battles; Fleiss' kappa over battles judged by
    two raters or more; per rater, the share of votes agreeing with the verdict that more than half of the other
    raters of the battle gave (battles without other raters, or without such a majority, are skipped)."""
    battles = _verdicts(judgements)
    by_rater: dict[str, dict[tuple[str, str, str], int]] = defaultdict(dict)
    for battle, verdicts in battles.items():
        for rater, verdict in verdicts.items():
            by_rater[rater][battle] = verdict
    raters = sorted(by_rater)
    pairs = []
    for first, second in combinations(raters, 2):
        shared = sorted(by_rater[first].keys() & by_rater[second].keys())
        if shared:
            kappa = _cohen_kappa(np.array([by_rater[first][battle] for battle in shared]),
                                 np.array([by_rater[second][battle] for battle in shared]))
            pairs.append(PairAgreement((first, second), len(shared), kappa))
    table = np.array([np.bincount(list(verdicts.values()), minlength=len(_VERDICTS))
                      for verdicts in battles.values() if len(verdicts) >= 2]).reshape(-1, len(_VERDICTS))
    consensus = []
    for rater in raters:
        compared = agreeing = 0
        for battle, own in by_rater[rater].items():
            others = Counter(verdict for other, verdict in battles[battle].items() if other != rater)
            if others:
                verdict, count = others.most_common(1)[0]
                if count > others.total() / 2:
                    compared += 1
                    agreeing += own == verdict
        consensus.append(RaterConsensus(rater, compared, agreeing, agreeing / compared if compared else None))
    return Agreement(pairs, _fleiss_kappa(table), len(table), consensus)


def choose_pair(judgements: list[Judgement], strategies: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair of `strategies`, the least certain first: pairs never compared (those whose two
    strategies have the fewest battles first), then by |difference of log-strengths| / its standard error, from the
    observed Fisher information of a Bradley–Terry fit with VIRTUAL_TIES_PER_PAIR added to each compared pair.
    Deterministic: equal pairs keep the order of `strategies`."""
    tally = _tally(judgements, strategies)
    battles = tally.wins() + tally.wins().T
    compared = battles > 0
    beta = _fit(_with_virtual_ties(tally.wins()))
    covariance = np.linalg.inv(_information(beta, battles + VIRTUAL_TIES_PER_PAIR * compared))
    played = battles.sum(1)

    def uncertainty_order(pair: tuple[int, int]) -> tuple:
        i, j = pair
        if not compared[i, j]:
            return (0, played[i] + played[j], i, j)
        spread = math.sqrt(covariance[i, i] + covariance[j, j] - 2 * covariance[i, j])
        return (1, abs(beta[i] - beta[j]) / spread, battles[i, j], i, j)

    ordered = sorted(combinations(range(len(tally.strategies)), 2), key=uncertainty_order)
    return [(tally.strategies[i], tally.strategies[j]) for i, j in ordered]
