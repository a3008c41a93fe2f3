"""Drift between two samples of embeddings (a baseline knowledge-base snapshot and the latest one, or served queries of
an earlier window and a recent one) and between two samples of chunk token lengths.

`mmd_test` is the kernel two-sample test (Gretton et al., 2012): the unbiased MMD² with a Gaussian kernel whose
bandwidth is the median pairwise distance of the pooled sample, and a permutation p-value, so its false-alarm rate
is the nominal `alpha` whatever the distribution. `topic_shift` says which part of the corpus moved, and
`length_shift` whether chunks got longer or shorter.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.stats import chi2_contingency, ks_2samp

MIN_ROWS = 5
TIE_TOLERANCE = 1e-12  # MMD² values closer than rounding error count as ties (as extreme as the observed one)
PERMUTATION_BATCH = 256  # permutations scored per matrix product: bounds memory at batch x pooled size floats


@dataclass
class DriftTest:
    """Result of the MMD permutation test of "baseline and current come from the same distribution"."""

    statistic: float
    p_value: float
    permutations: int
    sizes: tuple[int, int]
    drifted: bool
    alpha: float

    def to_dict(self) -> dict:
        return {"statistic": self.statistic, "p_value": self.p_value, "permutations": self.permutations,
                "sizes": list(self.sizes), "drifted": self.drifted, "alpha": self.alpha}


@dataclass
class TopicShift:
    """How the shares of the baseline's topics (k-means clusters) moved from baseline to current."""

    shares_baseline: list[float]
    shares_current: list[float]
    total_variation: float
    p_value: float
    largest_change: int

    def to_dict(self) -> dict:
        return {"shares_baseline": self.shares_baseline, "shares_current": self.shares_current,
                "total_variation": self.total_variation, "p_value": self.p_value,
                "largest_change": self.largest_change}


def mmd_test(baseline: np.ndarray, current: np.ndarray, *, permutations: int = 500, alpha: float = 0.05,
             seed: int = 0, max_samples: int = 500) -> DriftTest:
    """Kernel two-sample (MMD) permutation test; each side is first subsampled to at most `max_samples` rows."""
    baseline, current = _checked_pair(baseline, current)
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    rng = np.random.default_rng(seed)
    baseline, current = _subsample(baseline, max_samples, rng), _subsample(current, max_samples, rng)
    kernel = _gaussian_kernel(np.vstack([baseline, current]))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out each point's kernel with itself
    observed_labels = np.arange(len(kernel)) < len(baseline)
    shuffled_labels = rng.permuted(np.tile(observed_labels, (permutations, 1)), axis=1)
    observed = _mmd2_for_labels(kernel, observed_labels[None, :])[0]
    permuted = np.concatenate([_mmd2_for_labels(kernel, shuffled_labels[start:start + PERMUTATION_BATCH])
                               for start in range(0, permutations, PERMUTATION_BATCH)])
    p_value = (1 + np.count_nonzero(permuted >= observed - TIE_TOLERANCE)) / (1 + permutations)
    return DriftTest(statistic=float(observed), p_value=float(p_value), permutations=permutations,
                     sizes=(len(baseline), len(current)), drifted=bool(p_value < alpha), alpha=alpha)


def topic_shift(baseline: np.ndarray, current: np.ndarray, *, topics: int = 8, seed: int = 0) -> TopicShift:
    """Cluster the baseline into topics (k-means, at most len(baseline) // 5 of them, at least 2), assign both samples
    to the nearest centroid by cosine, and compare the topic shares (total variation, chi-square homogeneity test)."""
    baseline, current = _checked_pair(baseline, current)
    baseline, current = _unit_rows(baseline), _unit_rows(current)
    topics = max(2, min(topics, len(baseline) // MIN_ROWS))
    with warnings.catch_warnings():  # an empty cluster only means a topic with no baseline share
        warnings.simplefilter("ignore", UserWarning)
        centroids, _ = kmeans2(baseline, topics, minit="++", rng=np.random.default_rng(seed))
    centroids = _unit_rows(centroids)
    counts = np.stack([np.bincount(np.argmax(sample @ centroids.T, axis=1), minlength=topics)
                       for sample in (baseline, current)])
    shares = counts / counts.sum(axis=1, keepdims=True)
    change = shares[1] - shares[0]
    occupied = counts[:, counts.sum(axis=0) > 0]
    p_value = float(chi2_contingency(occupied).pvalue) if occupied.shape[1] >= 2 else 1.0
    return TopicShift(shares_baseline=shares[0].tolist(), shares_current=shares[1].tolist(),
                      total_variation=float(0.5 * np.abs(change).sum()), p_value=p_value,
                      largest_change=int(np.argmax(np.abs(change))))


def length_shift(baseline: list[int] | np.ndarray, current: list[int] | np.ndarray) -> dict:
    """Two-sample Kolmogorov-Smirnov test of the chunk token lengths."""
    baseline, current = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    if baseline.size == 0 or current.size == 0:
        raise ValueError(f"length_shift needs chunk lengths on both sides, got {baseline.size} and {current.size}")
    result = ks_2samp(baseline, current)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue),
            "median_baseline": float(np.median(baseline)), "median_current": float(np.median(current))}


def _checked_pair(baseline: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as float64 matrices, after checking they have enough rows and the same dimension."""
    baseline, current = np.asarray(baseline, dtype=np.float64), np.asarray(current, dtype=np.float64)
    for name, sample in (("baseline", baseline), ("current", current)):
        if sample.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array of vectors (rows), got shape {sample.shape}")
        if len(sample) < MIN_ROWS:
            raise ValueError(f"{name} has {len(sample)} vectors; a drift test needs at least {MIN_ROWS} on each side")
    if baseline.shape[1] != current.shape[1]:
        raise ValueError(f"baseline vectors have dimension {baseline.shape[1]} but current vectors have "
                         f"{current.shape[1]}; were they embedded by different models?")
    return baseline, current


def _subsample(sample: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """At most `max_samples` rows of `sample`, drawn without replacement."""
    if len(sample) <= max_samples:
        return sample
    return sample[rng.choice(len(sample), size=max_samples, replace=False)]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows left as they are)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _gaussian_kernel(pooled: np.ndarray) -> np.ndarray:
    """exp(-|x - y|² / 2σ²) over all pairs, σ the median pairwise distance (of the nonzero ones if most are zero)."""
    squared_norms = np.einsum("ij,ij->i", pooled, pooled)
    squared_distances = np.maximum(squared_norms[:, None] + squared_norms[None, :] - 2 * pooled @ pooled.T, 0.0)
    pair_distances = np.sqrt(squared_distances[np.triu_indices(len(pooled), k=1)])
    bandwidth = np.median(pair_distances)
    if bandwidth == 0:
        nonzero = pair_distances[pair_distances > 0]
        bandwidth = np.median(nonzero) if nonzero.size else 1.0
    return np.exp(-squared_distances / (2 * bandwidth ** 2))


def _mmd2_for_labels(off_diagonal: np.ndarray, in_first: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each row of `in_first` (booleans marking the pooled points of the first sample), given the
    pooled kernel matrix with a zero diagonal.

    With K that matrix, s a row of labels and r = K·1: within-first = sᵀKs, between = sᵀr - sᵀKs and
    within-second = 1ᵀK1 - 2sᵀr + sᵀKs, so a batch of labelings costs one matrix product.
    """
    row_sums = off_diagonal.sum(axis=1)
    labels = in_first.astype(np.float64)
    n = labels.sum(axis=1)
    m = len(off_diagonal) - n
    within_first = np.einsum("pi,pi->p", labels @ off_diagonal, labels)
    to_first = labels @ row_sums
    between = to_first - within_first
    within_second = row_sums.sum() - 2 * to_first + within_first
    return within_first / (n * (n - 1)) + within_second / (m * (m - 1)) - 2 * between / (n * m)
