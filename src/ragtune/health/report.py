"""`check_health`: every health check of a project in one report (see ragtune.health.findings)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.health.consistency import consistency_findings
from ragtune.health.content import (content_findings, crowding_findings, document_label, near_duplicate_findings,
                                    sample_chunk_ids)
from ragtune.health.corpus_drift import corpus_drift_findings
from ragtune.health.findings import HealthReport
from ragtune.health.freshness import freshness_findings
from ragtune.health.probe import probe_findings
from ragtune.health.traffic import MIN_QUERY_SAMPLE, coverage_findings, question_of, traffic_findings
from ragtune.progress import ProgressReporter, SilentProgress
from ragtune.project import Project
from ragtune.serve.answer_log import AnswerLog

CROWDING_PROXIES = 500  # sampled chunks standing in for questions when too few were served


def check_health(project: Project, *, probe_set: Path | None = None,
                 progress: ProgressReporter | None = None) -> HealthReport:
    """Run every check on the project's knowledge base, its snapshots and its served answers."""
    progress = progress or SilentProgress()
    steps = progress.task("health checks", 6)
    kb, store, config = project.kb, project.kb.store, project.config
    report = HealthReport(project=str(project.workspace.root), generated_at=time.time(), counts={})

    def add(area: str, findings: list, metrics: dict, series: dict | None = None) -> None:
        report.findings.extend(findings)
        report.metrics.setdefault(area, {}).update(metrics)
        report.series.update(series or {})

    add("consistency", *consistency_findings(kb))  # before anything syncs the indexes
    steps.advance()
    counts = store.counts()
    report.counts = {key: counts[key] for key in ("sources", "documents", "chunks")}
    documents = store.documents_by_id()
    add("content", *content_findings(store, config, documents))
    steps.advance()
    kb.sync_indexes()
    sample = store.chunk_sample(sample_chunk_ids(store, config.health.sample_chunks).tolist())
    near_findings, families, near_metrics = near_duplicate_findings(store, kb.index, config, documents, sample)
    add("content", near_findings, near_metrics)
    add("freshness", *freshness_findings(store, config.health, documents, families))
    steps.advance()

    log = AnswerLog(project.workspace.database_path)
    try:
        history = log.history()
    finally:
        log.close()
    add("traffic", *traffic_findings(history, config.health))
    embedder = _embedder(kb, report) if history or probe_set or config.health.probe_set else None
    questions = history[-config.health.max_questions:]
    document_of = store.chunk_documents()
    embeddings = np.zeros((0, 0), dtype=np.float32)
    if embedder is not None and questions:
        embeddings = embedder.encode([question_of(h["messages"]) for h in questions])
        similarities = np.array([hits[0][1] if hits else -1.0 for hits in kb.index.search(embeddings, 1)])
        retrieved = {chunk for h in history for chunk in h["retrieved"]}
        found = {document_of[c] for c in retrieved if c in document_of}
        never = sorted(document_label(documents[d]) for d in documents if d not in found)
        add("coverage", *coverage_findings(history, similarities, embeddings, counts["chunks"], config.health, never))
    steps.advance()
    if len(embeddings) >= MIN_QUERY_SAMPLE:
        queries, query_ids, source = embeddings, None, "the served questions"
    else:
        proxies = sample[:CROWDING_PROXIES]
        queries = np.stack([row[4] for row in proxies]) if proxies else np.zeros((0, 0), dtype=np.float32)
        query_ids, source = [row[0] for row in proxies], "sampled passages standing in for questions"
    add("content", *crowding_findings(kb.index, config, documents, families, queries, query_ids, document_of, source))
    add("drift", *corpus_drift_findings(store.snapshots(), config.health))
    steps.advance()
    probe_path = probe_set or (Path(config.health.probe_set) if config.health.probe_set else None)
    if probe_path is not None and embedder is not None:
        if not probe_path.is_absolute() and probe_set is None:
            probe_path = project.workspace.root / probe_path
        add("coverage", *probe_findings(store, project.retriever, probe_path, config.retrieval.k))
    steps.advance()
    return report


def _embedder(kb, report: HealthReport):
    """The knowledge base's embedder, or None when the configuration cannot load it (a consistency error then)."""
    try:
        return kb.embedder
    except RagtuneError as error:
        report.metrics.setdefault("consistency", {})["embedder_error"] = error.message
        return None
