"""Drift of the knowledge base between snapshots: the latest snapshot against the baseline (the previous one by
default, so a change is reported once and clears at the next ingest; or the first), by the MMD test on the sampled
embeddings, the topic shares and the chunk lengths. Only snapshots embedded by the latest one's model compare."""

from __future__ import annotations

import time

import numpy as np

from ragtune.config import HealthConfig
from ragtune.health.drift import MIN_ROWS, length_shift, mmd_test, topic_shift
from ragtune.health.findings import Finding

SERIES_SNAPSHOTS = 20  # latest snapshots plotted against the baseline
SERIES_PERMUTATIONS = 200


def corpus_drift_findings(snapshots: list[dict], config: HealthConfig) -> tuple[list[Finding], dict, dict]:
    """Findings, measurements and the drift series ([time, MMD²] and [time, p-value] per snapshot)."""
    metrics: dict = {"snapshots": len(snapshots)}
    if not snapshots:
        return [], metrics, {}
    model = _model(snapshots[-1])
    comparable = [s for s in snapshots if len(s["embeddings"]) >= MIN_ROWS and _model(s) == model]
    if len(comparable) < 2:
        return [], metrics, {}
    latest = comparable[-1]
    baseline = comparable[0] if config.drift_baseline == "first" else comparable[-2]
    test = mmd_test(baseline["embeddings"], latest["embeddings"], alpha=config.drift_alpha)
    topics = topic_shift(baseline["embeddings"], latest["embeddings"])
    lengths = length_shift(baseline["summary"]["sample_lengths"], latest["summary"]["sample_lengths"])
    metrics.update({"baseline": _describe(baseline), "latest": _describe(latest), "mmd": test.to_dict(),
                    "topics": topics.to_dict(), "lengths": lengths})
    findings = []
    if test.drifted:
        moved = topics.largest_change
        findings.append(Finding(
            "drift", "corpus_drift", "warning",
            f"the knowledge base changed since snapshot {baseline['id']} ({_date(baseline['created_at'])}): MMD "
            f"p = {test.p_value:.3f}; the topic that moved most went from {topics.shares_baseline[moved]:.0%} to "
            f"{topics.shares_current[moved]:.0%} of chunks; median chunk length {lengths['median_baseline']:.0f} → "
            f"{lengths['median_current']:.0f} tokens",
            "if the change was intended (new documents), re-run the evaluation (`ragtune compare`) so quality is "
            "measured on what is served now, and add test questions about the new material",
            {"p_value": test.p_value, "statistic": test.statistic, "topic_total_variation": topics.total_variation,
             "length_p_value": lengths["p_value"]}, _newest_material(baseline, latest)))
    series = {"drift_mmd": [], "drift_p_value": []}
    for position in range(max(1, len(comparable) - SERIES_SNAPSHOTS), len(comparable)):
        snapshot = comparable[position]
        reference = comparable[0] if config.drift_baseline == "first" else comparable[position - 1]
        point = test if snapshot is latest else mmd_test(reference["embeddings"], snapshot["embeddings"],
                                                         permutations=SERIES_PERMUTATIONS, alpha=config.drift_alpha)
        series["drift_mmd"].append([snapshot["created_at"], point.statistic])
        series["drift_p_value"].append([snapshot["created_at"], point.p_value])
    return findings, metrics, series


def _model(snapshot: dict) -> tuple:
    """What made a snapshot's embeddings: the embedder (recorded since snapshots carry it) and the dimension."""
    return snapshot["summary"].get("embedder"), snapshot["embeddings"].shape[1] if snapshot["embeddings"].size else 0


def _describe(snapshot: dict) -> dict:
    summary = snapshot["summary"]
    return {"id": snapshot["id"], "created_at": snapshot["created_at"], "chunks": summary["chunks"],
            "documents": summary["documents"], "languages": summary["languages"]}


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def _newest_material(baseline: dict, latest: dict, count: int = 5) -> list[str]:
    """Excerpts of the latest sample's chunks least like anything in the baseline's: what is new."""
    base = baseline["embeddings"] / np.linalg.norm(baseline["embeddings"], axis=1, keepdims=True).clip(1e-12)
    new = latest["embeddings"] / np.linalg.norm(latest["embeddings"], axis=1, keepdims=True).clip(1e-12)
    closest = (new @ base.T).max(axis=1)
    excerpts = latest["summary"]["sample_excerpts"]
    return [f"new: {excerpts[i]!r}" for i in np.argsort(closest)[:count]]
