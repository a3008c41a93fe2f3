"""Bootstrap intervals and paired tests on synthetic data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragtune.evaluation.statistics import (bootstrap_ci, compare_strategies, detectable_difference, holm_adjust, mcnemar,
                                          fewest_questions_for_significance, paired_bootstrap, paired_permutation_p,
                                          required_questions)


def test_bootstrap_ci_of_a_normal_sample_covers_the_mean_with_the_textbook_width():
    sigma, n = 2.0, 400
    values = np.random.default_rng(1).normal(5.0, sigma, n)
    low, high = bootstrap_ci(values, seed=3)
    assert low < 5.0 < high
    # The normal-theory 95% half-width is 1.96·σ/√n = 1.96 · 2 / 20 = 0.196.
    assert (high - low) / 2 == pytest.approx(1.96 * sigma / math.sqrt(n), rel=0.15)
    narrow_low, narrow_high = bootstrap_ci(values, confidence=0.5, seed=3)
    assert low < narrow_low < narrow_high < high


def test_bootstrap_ci_is_deterministic_for_a_seed():
    values = np.random.default_rng(0).random(50)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(list(values), seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_ci_of_one_or_constant_values_is_that_value():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([1.0] * 30) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_bootstrap_detects_a_large_difference():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(size=200)  # shared per-question effect, removed by pairing
    a = difficulty + 0.5 + rng.normal(0, 0.5, 200)
    b = difficulty + rng.normal(0, 0.5, 200)
    result = paired_bootstrap(a, b, seed=0)
    assert result["mean_difference"] == pytest.approx(float(np.mean(a - b)))
    assert result["ci_low"] < 0.5 < result["ci_high"] and result["ci_low"] > 0
    assert result["p_value"] < 0.01
    assert paired_bootstrap(b, a, seed=0)["mean_difference"] == pytest.approx(-result["mean_difference"])


def test_paired_bootstrap_does_not_detect_a_zero_difference():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(size=200)
    a, b = difficulty + rng.normal(0, 0.5, 200), difficulty + rng.normal(0, 0.5, 200)
    result = paired_bootstrap(a, b, seed=0)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert result["p_value"] > 0.05


def test_paired_bootstrap_p_value_matches_the_normal_approximation():
    # 400 differences standardised to mean 0.1 and sd 1: z = 0.1 / (1 / √400) = 2, so the two-sided
    # normal p-value is erfc(2 / √2) = 0.0455; the bootstrap's should be close to it.
    noise = np.random.default_rng(5).normal(size=400)
    differences = (noise - noise.mean()) / noise.std() + 0.1
    result = paired_bootstrap(differences, np.zeros(400), resamples=4000, seed=0)
    assert result["p_value"] == pytest.approx(math.erfc(2 / math.sqrt(2)), abs=0.015)
    assert (result["ci_low"], result["ci_high"]) == bootstrap_ci(differences, resamples=4000, seed=0)


def test_paired_bootstrap_edge_cases():
    assert paired_bootstrap([1.0, 0.0], [1.0, 0.0])["p_value"] == 1.0  # no difference at all
    assert paired_bootstrap([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])["p_value"] == 0.0  # every resample is +1
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0, 2.0], [1.0])


def outcomes(only_a: int, only_b: int, both: int = 5, neither: int = 3) -> tuple[list[bool], list[bool]]:
    """Paired right/wrong lists with the given discordant counts (concordant pairs do not matter)."""
    pairs = [(True, False)] * only_a + [(False, True)] * only_b + [(True, True)] * both + [(False, False)] * neither
    return [x for x, _ in pairs], [y for _, y in pairs]


def test_mcnemar_exact_binomial():
    # b = 1, c = 9: p = 2 · P(X <= 1), X ~ Binomial(10, 1/2) = 2 · (1 + 10) / 1024 = 0.021484375
    result = mcnemar(*outcomes(1, 9))
    assert (result["b"], result["c"], result["test"]) == (1, 9, "exact_binomial")
    assert result["p_value"] == pytest.approx(22 / 1024)
    # b = c = 3: 2 · P(X <= 3; 6) = 2 · 42/64 > 1 → capped at 1
    assert mcnemar(*outcomes(3, 3))["p_value"] == 1.0
    assert mcnemar(*outcomes(0, 0))["p_value"] == 1.0
    assert mcnemar(*outcomes(12, 12))["test"] == "exact_binomial"  # 24 discordant pairs


def test_mcnemar_chi_square_with_continuity_correction():
    # b = 30, c = 10: statistic = (|30 − 10| − 1)² / 40 = 361 / 40 = 9.025;
    # P(chi-square(1) > 9.025) = erfc(√(9.025 / 2)) = 0.0026631 (scipy.stats.chi2.sf(9.025, 1) agrees).
    result = mcnemar(*outcomes(30, 10))
    assert result["test"] == "chi_square_continuity_corrected"
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(0.0026631, abs=1e-7)
    assert mcnemar(*outcomes(13, 12))["test"] == "chi_square_continuity_corrected"  # 25 discordant pairs
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_compare_strategies_pairs_each_two_strategies_once():
    rng = np.random.default_rng(0)
    per_question = {
        "rag": {"exact_match": [1.0] * 36 + [0.0] * 4, "token_f1": list(rng.uniform(0.6, 1.0, 40))},
        "base": {"exact_match": [1.0] * 5 + [0.0] * 35, "token_f1": list(rng.uniform(0.0, 0.4, 40))},
        "sft": {"exact_match": [1.0] * 6 + [0.0] * 34},
    }
    em = compare_strategies(per_question, "exact_match", binary=True)
    assert [(r["a"], r["b"]) for r in em] == [("base", "rag"), ("base", "sft"), ("rag", "sft")]
    base_rag = em[0]
    assert base_rag["metric"] == "exact_match" and base_rag["test"] == "paired_permutation" and base_rag["n"] == 40
    assert base_rag["mean_difference"] == pytest.approx((5 - 36) / 40)
    assert base_rag["significant"] and base_rag["mcnemar_p_value"] < 1e-6
    assert not em[1]["significant"] and em[1]["mcnemar_p_value"] == 1.0  # 5 vs 6 right, 1 discordant pair
    assert base_rag == compare_strategies(per_question, "exact_match", binary=True)[0]  # seeded
    assert [r["p_adjusted"] for r in em] == pytest.approx(holm_adjust([r["p_value"] for r in em]))

    f1 = compare_strategies(per_question, "token_f1")  # sft has no token_f1 and is left out
    assert [(r["a"], r["b"]) for r in f1] == [("base", "rag")]
    assert "mcnemar_p_value" not in f1[0] and f1[0]["significant"]


def test_compare_strategies_leaves_out_questions_without_a_score():
    per_question = {"a": {"groundedness": [0.5, None, 1.0, float("nan")]},
                    "b": {"groundedness": [0.25, 0.5, None, 0.0]}}
    (result,) = compare_strategies(per_question, "groundedness")
    assert result["n"] == 1 and result["mean_difference"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="4 and 3 questions"):
        compare_strategies({"a": {"m": [1, 2, 3, 4]}, "b": {"m": [1, 2, 3]}}, "m")


def test_holm_adjustment_matches_the_textbook_example():
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 times 4, 3, 2, 1, kept monotone.
    assert holm_adjust([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0]
    assert holm_adjust([]) == []


def test_more_comparisons_make_a_difference_harder_to_call_significant():
    rng = np.random.default_rng(3)
    base = list(rng.uniform(0, 1, 60))
    per_question = {"base": {"f1": base}, "rag": {"f1": list(np.array(base) + rng.normal(0.08, 0.25, 60))}}
    alone = compare_strategies(per_question, "f1")[0]
    assert alone["p_adjusted"] == alone["p_value"] < 0.05
    for index in range(8):  # eight more strategies that differ from nothing
        per_question[f"s{index}"] = {"f1": list(rng.permutation(base))}
    among_many = next(r for r in compare_strategies(per_question, "f1") if {r["a"], r["b"]} == {"base", "rag"})
    assert among_many["p_value"] == alone["p_value"]
    assert among_many["p_adjusted"] > alone["p_adjusted"] and not among_many["significant"]


@pytest.mark.parametrize("difference, sd, comparisons", [(0.1, 0.35, 1), (0.08, 0.3, 10)])
def test_the_power_estimate_matches_a_simulation(difference, sd, comparisons):
    """At the estimated number of questions, the paired test compare uses, at the corrected level, detects the
    difference in about 80% of simulated test sets (normal per-question differences)."""
    n = required_questions(sd, difference, comparisons=comparisons)
    assert detectable_difference(sd, n, comparisons=comparisons) == pytest.approx(difference, rel=0.05)
    rng = np.random.default_rng(11)
    level = 0.05 / comparisons
    simulations = 200
    detected = sum(paired_permutation_p(rng.normal(difference, sd, n), np.zeros(n), resamples=2000, seed=index)
                   < level for index in range(simulations))
    assert 0.70 <= detected / simulations <= 0.90, (n, detected)


def test_no_observed_difference_needs_no_sizing_and_too_few_questions_detect_nothing():
    assert required_questions(0.3, 0.0) is None
    # Eight questions all won give p = 2/256 = 0.0078; ten comparisons make that 0.078: nothing can be detected.
    assert fewest_questions_for_significance(10) == 9 and fewest_questions_for_significance(1) == 6
    assert detectable_difference(0.0, 8, comparisons=10) is None
    assert detectable_difference(0.0, 9, comparisons=10) == 0.0
    assert required_questions(0.0, 1.0, comparisons=10) == 9  # no variance still needs the permutation test's 9
    assert paired_permutation_p([1.0] * 9, [0.0] * 9) * 10 < 0.05 <= paired_permutation_p([1.0] * 8, [0.0] * 8) * 10


def test_the_permutation_p_value_is_exact_with_few_questions():
    """Eight questions all won: the exact sign-flip p is 2 / 2⁸, where the bootstrap claims far less."""
    wins = [0.2, 0.3, 0.1, 0.4, 0.2, 0.5, 0.1, 0.3]
    assert paired_permutation_p(wins, [0.0] * 8) == pytest.approx(2 / 256)
    assert paired_bootstrap(wins, [0.0] * 8)["p_value"] < 0.001
    assert paired_permutation_p([0.5, 0.5], [0.5, 0.5]) == 1.0
