"""Confidence intervals and significance tests for per-question scores of strategies on the same questions."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np
from scipy.stats import norm, permutation_test

SIGNIFICANCE_LEVEL = 0.05
POWER = 0.8  # the chance of detecting a real difference that power estimates aim for
_EXACT_MCNEMAR_BELOW = 25  # discordant pairs; from there on the chi-square approximation is used
_DRAWS_PER_CHUNK = 1 << 22  # resampled indices held in memory at once


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` bootstrap samples (n draws with replacement), in memory-bounded chunks."""
    rng = np.random.default_rng(seed)
    n = len(values)
    rows_per_chunk = max(1, _DRAWS_PER_CHUNK // n)
    means = [values[rng.integers(0, n, size=(min(rows_per_chunk, resamples - start), n))].mean(axis=1)
             for start in range(0, resamples, rows_per_chunk)]
    return np.concatenate(means)


def _as_array(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError("need a non-empty sequence of numbers")
    return array


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean; the same seed gives the same interval.

    A single value, or values that are all equal, give (value, value).
    """
    array = _as_array(values)
    if np.all(array == array[0]):
        return float(array[0]), float(array[0])
    return _percentile_interval(_resampled_means(array, resamples, seed), confidence)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> dict:
    """Bootstrap of the mean per-question difference a − b, resampling questions (pairs stay together).

    Returns mean_difference, the percentile interval ci_low..ci_high, and a two-sided p_value: twice
    the share of resampled mean differences on the other side of zero from the observed one (zero
    itself counts as the other side), capped at 1; 1.0 when the observed difference is 0. Its
    resolution is 2 / resamples, and it is reliable only with enough questions (a few dozen or more).
    """
    first, second = _as_array(a), _as_array(b)
    if first.shape != second.shape:
        raise ValueError(f"paired samples differ in length: {first.size} and {second.size}")
    differences = first - second
    observed = float(differences.mean())
    means = _resampled_means(differences, resamples, seed)
    low, high = _percentile_interval(means, confidence)
    if observed == 0:
        p_value = 1.0
    else:
        other_side = np.mean(means <= 0) if observed > 0 else np.mean(means >= 0)
        p_value = min(1.0, 2 * float(other_side))
    return {"mean_difference": observed, "ci_low": low, "ci_high": high, "p_value": p_value}


def paired_permutation_p(a: Sequence[float], b: Sequence[float], *, resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value of the paired permutation (sign-flip) test of mean(a − b) = 0, by scipy.

    Exact (every sign pattern) when 2ⁿ ≤ resamples, so with few questions the p-value keeps its meaning: 8
    questions all won by a give p = 2/256, where a bootstrap would claim p < 0.001. 1.0 when all differences are 0
    or there is one question.
    """
    first, second = _as_array(a), _as_array(b)
    if first.shape != second.shape:
        raise ValueError(f"paired samples differ in length: {first.size} and {second.size}")
    if np.all(first == second) or first.size < 2:  # one question: both sign patterns are as extreme
        return 1.0
    result = permutation_test((first, second), lambda x, y, axis: np.mean(x - y, axis=axis),
                              permutation_type="samples", vectorized=True, n_resamples=resamples,
                              alternative="two-sided", random_state=seed)
    return min(1.0, float(result.pvalue))


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict:
    """McNemar's test on paired right/wrong outcomes of two strategies.

    b counts questions a got right and b wrong, c the reverse. With b + c < 25 the exact two-sided
    binomial test (statistic = min(b, c), p = 2·P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2),
    capped at 1); otherwise the chi-square test with continuity correction
    (statistic = (|b − c| − 1)² / (b + c), 1 degree of freedom). `test` names the one used.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired samples differ in length: {len(a_correct)} and {len(b_correct)}")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a_correct, b_correct))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a_correct, b_correct))
    discordant = only_a + only_b
    if discordant < _EXACT_MCNEMAR_BELOW:
        smaller = min(only_a, only_b)
        tail = sum(math.comb(discordant, i) for i in range(smaller + 1)) / 2**discordant
        return {"b": only_a, "c": only_b, "statistic": float(smaller), "p_value": min(1.0, 2 * tail),
                "test": "exact_binomial"}
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    # The chi-square(1) upper tail: P(Z² > x) = erfc(sqrt(x / 2)) for a standard normal Z.
    return {"b": only_a, "c": only_b, "statistic": statistic, "p_value": math.erfc(math.sqrt(statistic / 2)),
            "test": "chi_square_continuity_corrected"}


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    scipy has no Holm correction (statsmodels' multipletests does, but is not worth a dependency for ten lines):
    the i-th smallest p is multiplied by (m − i + 1), made monotone, and capped at 1.
    """
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


def _z_sum(comparisons: int, alpha: float, power: float) -> float:
    """z of the two-sided level alpha / comparisons (Bonferroni, Holm's first step) plus z of the power."""
    return float(norm.ppf(1 - alpha / comparisons / 2) + norm.ppf(power))


def fewest_questions_for_significance(comparisons: int = 1, alpha: float = SIGNIFICANCE_LEVEL) -> int:
    """The fewest questions with which the paired permutation test can reach significance at all: its smallest
    p-value is 2 / 2ⁿ (every question won by the same side), and Holm's first step multiplies it by the number of
    comparisons."""
    return math.floor(math.log2(2 * comparisons / alpha)) + 1


def required_questions(sd_difference: float, difference: float, *, comparisons: int = 1,
                       alpha: float = SIGNIFICANCE_LEVEL, power: float = POWER) -> int | None:
    """Questions a paired test needs to detect a mean per-question `difference` with `power`, when paired
    differences have standard deviation `sd_difference` and `comparisons` tests share the level `alpha`
    (normal approximation: n = ((z₁₋α/2m + z_power) · sd / difference)², and never fewer than the permutation
    test needs to reach significance at all). None when the difference is 0."""
    if difference == 0:
        return None
    normal = math.ceil((_z_sum(comparisons, alpha, power) * sd_difference / abs(difference)) ** 2)
    return max(normal, fewest_questions_for_significance(comparisons, alpha))


def detectable_difference(sd_difference: float, n: int, *, comparisons: int = 1, alpha: float = SIGNIFICANCE_LEVEL,
                          power: float = POWER) -> float | None:
    """The smallest mean per-question difference a paired test on `n` questions detects with `power`; None when
    `n` questions are too few for any difference to reach significance (fewest_questions_for_significance)."""
    if n < fewest_questions_for_significance(comparisons, alpha):
        return None
    return _z_sum(comparisons, alpha, power) * sd_difference / math.sqrt(n)


def compare_strategies(per_question: dict[str, dict[str, list[float]]], metric: str, *, binary: bool = False,
                       seed: int = 0) -> list[dict]:
    """Paired comparisons of every two strategies (sorted names, each pair once) on one metric, Holm-corrected.

    `per_question[strategy][metric]` lists that strategy's score on each question, in the same
    question order for every strategy. Strategies without the metric are left out; questions where
    either strategy of a pair has no score (None or NaN) are left out of that pair, `n` says how
    many were compared, and a pair with none in common is left out. Each result has a, b, metric,
    n, mean_difference (a − b), sd_difference (of the per-question differences), ci_low and ci_high
    (paired bootstrap), p_value and test ("paired_permutation": valid with few questions too, where
    bootstrap p-values are too small), p_adjusted (Holm over the pairs returned), `significant`
    (adjusted p < 0.05), and for `binary` (0/1) metrics also mcnemar_p_value.
    """
    scored = {name: metrics[metric] for name, metrics in per_question.items() if metric in metrics}
    results = []
    for a, b in combinations(sorted(scored), 2):
        first, second = _paired_scores(scored[a], scored[b], a, b)
        if first.size == 0:
            continue
        differences = first - second
        interval = paired_bootstrap(first, second, seed=seed)
        result = {"a": a, "b": b, "metric": metric, "n": int(first.size), "test": "paired_permutation",
                  **{key: interval[key] for key in ("mean_difference", "ci_low", "ci_high")},
                  "p_value": paired_permutation_p(first, second, seed=seed),
                  "sd_difference": float(differences.std(ddof=1)) if first.size > 1 else 0.0}
        if binary:
            result["mcnemar_p_value"] = mcnemar(first == 1, second == 1)["p_value"]
        results.append(result)
    for result, adjusted in zip(results, holm_adjust([result["p_value"] for result in results])):
        result["p_adjusted"] = adjusted
        result["significant"] = adjusted < SIGNIFICANCE_LEVEL
    return results


def _paired_scores(a: list[float | None], b: list[float | None], name_a: str, name_b: str):
    if len(a) != len(b):
        raise ValueError(f"strategies {name_a} and {name_b} have scores for {len(a)} and {len(b)} questions")
    first = np.array([np.nan if x is None else x for x in a], dtype=np.float64)
    second = np.array([np.nan if x is None else x for x in b], dtype=np.float64)
    both = ~(np.isnan(first) | np.isnan(second))
    return first[both], second[both]
