"""Served traffic and coverage, from the answers the server records: volume, latency, answers citing nothing,
thumbs-down feedback, served questions far from every chunk (coverage gaps), chunks never retrieved, and whether the
questions drifted between the earlier and the later half of the recent ones.

Shares that raise warnings are taken over the recent answers (the last `health.max_questions`), so a warning clears
once what caused it is fixed; volumes and the series cover the whole log."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ragtune.config import HealthConfig
from ragtune.health.drift import mmd_test
from ragtune.health.findings import EXAMPLES, Finding

MIN_QUERY_SAMPLE = 10  # questions per half before a query-drift test is run
MIN_RATINGS = 5  # rated answers before the thumbs-down share can warn
MAX_POINTS = 60  # points per time series


def traffic_findings(history: list[dict], config: HealthConfig) -> tuple[list[Finding], dict, dict]:
    """Findings, measurements and time series of the served answers (oldest first, as AnswerLog.history gives)."""
    if not history:
        return [], {"answers": 0}, {}
    recent = history[-config.max_questions:]
    latency = np.array([h["latency_s"] for h in recent])
    uncited = [h for h in recent if not h["cited"]]
    rated = [h for h in recent if h["feedback"]]
    down = [h for h in history if h["feedback"] == "down"]
    metrics = {"answers": len(history), "recent_answers": len(recent), "first": history[0]["created_at"],
               "last": history[-1]["created_at"], "latency_p50_s": float(np.percentile(latency, 50)),
               "latency_p95_s": float(np.percentile(latency, 95)), "no_citation_share": len(uncited) / len(recent),
               "rated": len(rated), "thumbs_down_share": sum(h["feedback"] == "down" for h in rated) / len(rated)
               if rated else None, "by_model": dict(Counter(h["model"] for h in history).most_common())}
    enough = len(recent) >= config.min_answers
    findings = []
    if enough and metrics["latency_p95_s"] > config.latency_p95_s:
        findings.append(Finding("traffic", "slow_answers", "warning",
                                f"95% of the last {len(recent)} answers took up to {metrics['latency_p95_s']:.1f} s "
                                f"(limit {config.latency_p95_s:g} s)", "serve a smaller or quantised model, lower "
                                "max_tokens, or add a replica", {"latency_p95_s": metrics["latency_p95_s"]}))
    if enough and metrics["no_citation_share"] > config.no_citation_share:
        findings.append(Finding("traffic", "uncited_answers", "warning",
                                f"{metrics['no_citation_share']:.0%} of the last {len(recent)} answers cite no "
                                "passage", "check retrieval finds passages for these questions (coverage below) and "
                                "that the served model follows the citation prompt", {"answers": len(uncited)},
                                [h["question"][:150] for h in reversed(uncited[-EXAMPLES:])]))
    if down:
        share = metrics["thumbs_down_share"] or 0.0
        warn = len(rated) >= MIN_RATINGS and share > config.thumbs_down_share
        findings.append(Finding("traffic", "thumbs_down", "warning" if warn else "info",
                                f"{len(down)} answers got a thumbs-down ({share:.0%} of the {len(rated)} recent "
                                "rated ones)", "read the questions and comments; missing documents show up as "
                                "coverage gaps", {"down": len(down), "recent_rated": len(rated)},
                                [f"{h['question'][:120]!r}"
                                 + (f" — {h['feedback_comment'][:120]!r}" if h["feedback_comment"] else "")
                                 for h in reversed(down[-EXAMPLES:])]))
    return findings, metrics, _series(history)


def _buckets(times: list[float]) -> tuple[int, dict[float, list[int]]]:
    """The bucket length (a minute, hour, day, week or 30 days: at most MAX_POINTS buckets where possible) and the
    positions of the times in each bucket, by the bucket's start."""
    span = max(times[-1] - times[0], 1.0)
    bucket = next((size for size in (60, 3600, 86_400, 7 * 86_400) if span / size <= MAX_POINTS), 30 * 86_400)
    groups: dict[float, list[int]] = {}
    for position, at in enumerate(times):
        groups.setdefault(float(at // bucket * bucket), []).append(position)
    return bucket, groups


def _series(history: list[dict]) -> dict:
    """Per time bucket: answers, latency p50/p95, no-citation share, thumbs-down share."""
    bucket, groups = _buckets([h["created_at"] for h in history])
    series: dict[str, list[list[float]]] = {"answers": [], "latency_p50_s": [], "latency_p95_s": [],
                                            "no_citation_share": [], "thumbs_down_share": []}
    for start, members in sorted(groups.items()):
        latencies = [history[i]["latency_s"] for i in members]
        series["answers"].append([start, len(members)])
        series["latency_p50_s"].append([start, float(np.percentile(latencies, 50))])
        series["latency_p95_s"].append([start, float(np.percentile(latencies, 95))])
        series["no_citation_share"].append([start, sum(not history[i]["cited"] for i in members) / len(members)])
        rated = [history[i]["feedback"] for i in members if history[i]["feedback"]]
        if rated:
            series["thumbs_down_share"].append([start, rated.count("down") / len(rated)])
    series["bucket_s"] = bucket
    return series


def coverage_findings(recent: list[dict], similarities: np.ndarray, embeddings: np.ndarray, retrieved: int,
                      chunk_count: int, never_retrieved_documents: list[str], answers: int, config: HealthConfig,
                      ) -> tuple[list[Finding], dict, dict]:
    """Coverage gaps (the `recent` answers whose question's closest chunk is below `weak_similarity`), chunks never
    retrieved by the `answers` recorded (`retrieved`: how many of today's chunks some answer retrieved), and the drift
    of the recent questions between their two halves."""
    weak = [h for h, similarity in zip(recent, similarities) if similarity < config.weak_similarity]
    metrics = {"questions_checked": len(recent), "weak_questions": len(weak),
               "weak_share": len(weak) / len(recent) if recent else None,
               "best_similarity_median": float(np.median(similarities)) if len(similarities) else None,
               "chunks_retrieved": retrieved, "chunks": chunk_count,
               "never_retrieved_share": 1 - retrieved / chunk_count if chunk_count and answers else None}
    findings = []
    if weak:
        severity = "warning" if len(recent) >= config.min_answers and metrics["weak_share"] > config.weak_share \
            else "info"
        asked = Counter(h["question"].strip() for h in reversed(weak))  # among equally asked, the most recent first
        findings.append(Finding(
            "coverage", "coverage_gaps", severity,
            f"{len(weak)} of {len(recent)} served questions found no passage close to them (cosine < "
            f"{config.weak_similarity:g}): the documents do not cover them",
            "add documents that answer them, or tell users what the assistant covers",
            {"questions": len(weak), "of": len(recent), "distinct": len(asked)},
            [f"{question[:150]!r}" + (f" (asked {count} times)" if count > 1 else "")
             for question, count in asked.most_common(EXAMPLES)]))
    if answers >= config.min_answers and never_retrieved_documents:
        findings.append(Finding(
            "coverage", "never_retrieved", "info",
            f"{metrics['never_retrieved_share']:.0%} of chunks were never retrieved by the {answers} served "
            f"answers; {len(never_retrieved_documents)} documents never were",
            "nothing if users simply do not ask about them; otherwise check those documents are findable",
            {"chunks_never_retrieved": chunk_count - retrieved, "documents": len(never_retrieved_documents)},
            never_retrieved_documents[:EXAMPLES]))
    series = {}
    if recent:
        _, groups = _buckets([h["created_at"] for h in recent])
        weak_flags = similarities < config.weak_similarity
        series["weak_share"] = [[start, float(weak_flags[members].mean())] for start, members in sorted(groups.items())]
    if len(embeddings) >= 2 * MIN_QUERY_SAMPLE:
        half = len(embeddings) // 2
        test = mmd_test(embeddings[:half], embeddings[half:], alpha=config.drift_alpha)
        metrics["query_drift"] = test.to_dict()
        if test.drifted:
            findings.append(Finding(
                "drift", "query_drift", "warning",
                f"the later {len(embeddings) - half} questions differ from the earlier {half} (MMD p = "
                f"{test.p_value:.3f}): users ask about other things now",
                "check the coverage gaps for the new subjects and add documents for them", test.to_dict()))
    return findings, metrics, series
