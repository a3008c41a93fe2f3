"""Drift tests on synthetic embedding samples: mixtures of normalised Gaussian clusters, as chunk embeddings are."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from ragtune.health.drift import length_shift, mmd_test, topic_shift


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def topic_centers(rng: np.random.Generator, topics: int, dimension: int) -> np.ndarray:
    return unit_rows(rng.normal(size=(topics, dimension)))


def embeddings(rng: np.random.Generator, size: int, centers: np.ndarray, weights=None, noise: float = 1.0) -> np.ndarray:
    """`size` unit vectors around the `centers` (drawn with `weights`), each noise vector of norm about `noise`."""
    topics = rng.choice(len(centers), size=size, p=weights)
    dimension = centers.shape[1]
    return unit_rows(centers[topics] + noise * rng.normal(size=(size, dimension)) / np.sqrt(dimension))


def with_new_topic(rng: np.random.Generator, size: int, centers: np.ndarray, share: float) -> np.ndarray:
    """The mixture over `centers[:-1]`, plus the last center's topic taking `share` of the sample."""
    weights = np.r_[np.full(len(centers) - 1, (1 - share) / (len(centers) - 1)), share]
    return embeddings(rng, size, centers, weights)


def test_a_new_topic_is_detected():
    rng = np.random.default_rng(1)
    centers = topic_centers(rng, 7, 384)
    baseline = embeddings(rng, 500, centers[:6]).astype(np.float32)
    current = with_new_topic(rng, 500, centers, share=0.3).astype(np.float32)

    result = mmd_test(baseline, current)

    assert result.drifted
    assert result.p_value == pytest.approx(1 / 501)  # no permutation reaches the observed statistic
    assert result.statistic > 0
    assert result.sizes == (500, 500)


def test_a_mean_shift_is_detected():
    rng = np.random.default_rng(2)
    centers = topic_centers(rng, 6, 64)
    direction = topic_centers(rng, 1, 64)[0]
    baseline = embeddings(rng, 200, centers)
    current = unit_rows(embeddings(rng, 200, centers) + 0.3 * direction)

    result = mmd_test(baseline, current, permutations=200)

    assert result.drifted
    assert result.p_value < 0.01


def test_a_fresh_sample_of_the_same_corpus_is_not_flagged():
    rng = np.random.default_rng(3)
    centers = topic_centers(rng, 6, 384)

    result = mmd_test(embeddings(rng, 400, centers), embeddings(rng, 400, centers))

    assert not result.drifted
    assert result.p_value > 0.2


def test_false_alarm_rate_is_near_nominal():
    rng = np.random.default_rng(7)
    centers = topic_centers(rng, 6, 64)
    alarms = [mmd_test(embeddings(rng, 100, centers), embeddings(rng, 100, centers), permutations=200, seed=run).drifted
              for run in range(200)]
    assert 0.01 <= np.mean(alarms) <= 0.10


def test_a_moderate_shift_is_detected_most_of_the_time():
    rng = np.random.default_rng(11)
    centers = topic_centers(rng, 7, 64)
    detections = [mmd_test(embeddings(rng, 100, centers[:6]), with_new_topic(rng, 100, centers, share=0.25),
                           permutations=200, seed=run).drifted
                  for run in range(50)]
    assert np.mean(detections) > 0.8


def test_statistic_is_the_unbiased_mmd2_with_the_median_bandwidth():
    rng = np.random.default_rng(5)
    baseline, current = rng.normal(size=(8, 3)), rng.normal(loc=0.5, size=(7, 3))
    bandwidth = np.median(pdist(np.vstack([baseline, current])))

    def kernel(a, b):
        return np.exp(-squareform(pdist(np.vstack([a, b])))[: len(a), len(a):] ** 2 / (2 * bandwidth ** 2))

    def mean_off_diagonal(square):
        return (square.sum() - np.trace(square)) / (len(square) * (len(square) - 1))

    expected = (mean_off_diagonal(kernel(baseline, baseline)) + mean_off_diagonal(kernel(current, current))
                - 2 * kernel(baseline, current).mean())

    result = mmd_test(baseline, current, permutations=50)

    assert result.statistic == pytest.approx(expected, rel=1e-9)
    assert 1 / 51 <= result.p_value <= 1
    assert result.permutations == 50


def test_samples_are_capped_and_results_reproducible():
    rng = np.random.default_rng(6)
    centers = topic_centers(rng, 4, 32)
    baseline, current = embeddings(rng, 300, centers), embeddings(rng, 120, centers)

    first = mmd_test(baseline, current, max_samples=100, permutations=100, seed=4)

    assert first.sizes == (100, 100)
    assert first == mmd_test(baseline, current, max_samples=100, permutations=100, seed=4)
    assert json.loads(json.dumps(first.to_dict()))["sizes"] == [100, 100]


def test_subsampling_draws_across_the_whole_sample():
    rng = np.random.default_rng(13)
    centers = topic_centers(rng, 2, 32)
    ordered_by_topic = np.vstack([embeddings(rng, 150, centers[:1]), embeddings(rng, 150, centers[1:])])
    mixed = embeddings(rng, 300, centers)

    assert not mmd_test(ordered_by_topic, mixed, max_samples=100, permutations=200).drifted


def test_500_permutations_on_2x500_points_are_fast():
    rng = np.random.default_rng(8)
    centers = topic_centers(rng, 6, 384)
    baseline = embeddings(rng, 500, centers).astype(np.float32)
    current = embeddings(rng, 500, centers).astype(np.float32)

    started = time.perf_counter()
    mmd_test(baseline, current, permutations=500)

    assert time.perf_counter() - started < 2.0


def test_a_planted_topic_shows_as_one_topic_gaining_share():
    rng = np.random.default_rng(0)
    centers = topic_centers(rng, 6, 64)
    next_to_first = unit_rows(centers[:1] + topic_centers(rng, 1, 64))  # a new subject close to an existing one
    baseline, same = embeddings(rng, 300, centers), embeddings(rng, 300, centers)
    current = np.vstack([embeddings(rng, 210, centers), embeddings(rng, 90, next_to_first)])

    unchanged, shifted = topic_shift(baseline, same), topic_shift(baseline, current)

    assert unchanged.total_variation < 0.12
    assert unchanged.p_value > 0.05
    assert shifted.total_variation > 0.2
    assert shifted.p_value < 1e-6
    gained = shifted.shares_current[shifted.largest_change] - shifted.shares_baseline[shifted.largest_change]
    assert gained > 0.2  # most of the planted 30 % went to a single topic
    assert len(shifted.shares_baseline) == 8
    assert sum(shifted.shares_current) == pytest.approx(1.0)
    assert json.loads(json.dumps(shifted.to_dict()))["largest_change"] == shifted.largest_change


def test_topic_count_is_clamped_to_a_fifth_of_the_baseline():
    rng = np.random.default_rng(9)
    centers = topic_centers(rng, 3, 16)
    assert len(topic_shift(embeddings(rng, 20, centers), embeddings(rng, 20, centers)).shares_baseline) == 4
    assert len(topic_shift(embeddings(rng, 6, centers), embeddings(rng, 20, centers)).shares_baseline) == 2


def test_length_shift():
    rng = np.random.default_rng(10)
    baseline = rng.poisson(200, 300)

    same = length_shift(baseline, rng.poisson(200, 300))
    shorter = length_shift(list(baseline), rng.poisson(150, 300).tolist())

    assert same["p_value"] > 0.05
    assert shorter["p_value"] < 1e-6
    assert shorter["median_current"] < shorter["median_baseline"]
    assert set(shorter) == {"statistic", "p_value", "median_baseline", "median_current"}


@pytest.mark.parametrize("check", [mmd_test, topic_shift])
def test_bad_input_is_refused_clearly(check):
    rng = np.random.default_rng(12)
    with pytest.raises(ValueError, match="baseline has 4 vectors.*at least 5"):
        check(rng.normal(size=(4, 8)), rng.normal(size=(10, 8)))
    with pytest.raises(ValueError, match="current has 3 vectors"):
        check(rng.normal(size=(10, 8)), rng.normal(size=(3, 8)))
    with pytest.raises(ValueError, match="dimension 8 but current vectors have 16"):
        check(rng.normal(size=(10, 8)), rng.normal(size=(10, 16)))
    with pytest.raises(ValueError, match="2-D"):
        check(rng.normal(size=10), rng.normal(size=(10, 8)))


def test_length_shift_refuses_an_empty_side():
    with pytest.raises(ValueError, match="both sides"):
        length_shift([], [100, 120])
