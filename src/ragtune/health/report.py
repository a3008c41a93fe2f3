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
from ragtune.health.findings import Finding, HealthReport
from ragtune.health.freshness import freshness_findings
from ragtune.health.probe import probe_findings
from ragtune.health.traffic import MIN_QUERY_SAMPLE, coverage_findings, traffic_findings
from ragtune.knowledge.storage import records_location
from ragtune.progress import ProgressReporter, SilentProgress
from ragtune.project import Project
from ragtune.serve.answer_log import AnswerLog

CROWDING_PROXIES = 500  # sampled chunks standing in for questions when too few were served


def check_health(project: Project, *, probe_set: Path | None = None, record_probe: bool = True,
                 progress: ProgressReporter | None = None) -> HealthReport:
    """Run every check on the project's knowledge base, its snapshots and its served answers. `record_probe`: add
    this run's probe-set recall to its history (a server answering /v1/monitoring only reads it)."""
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
    document_of = store.chunk_documents()
    sample = store.chunk_sample(sample_chunk_ids(store, config.health.sample_chunks).tolist())
    near_findings, families, near_metrics = near_duplicate_findings(store, kb.index, config, documents, document_of,
                                                                    sample)
    add("content", near_findings, near_metrics)
    add("freshness", *freshness_findings(store, config.health, documents, families))
    steps.advance()

    log = AnswerLog(records_location(project.workspace))
    try:
        history = log.history(questions_of_latest=config.health.max_questions)
    finally:
        log.close()
    add("traffic", *traffic_findings(history, config.health))
    probe_path = probe_set or (Path(config.health.probe_set) if config.health.probe_set else None)
    if probe_path is not None and probe_set is None and not probe_path.is_absolute():
        probe_path = project.workspace.root / probe_path
    embedder = _embedder(kb, report, required=probe_set is not None) if history or probe_path else None
    recent = history[-config.health.max_questions:]
    embeddings = np.zeros((0, 0), dtype=np.float32)
    if embedder is not None and recent:
        embeddings = embedder.encode([h["question"] for h in recent])
        similarities = np.array([hits[0][1] if hits else -1.0 for hits in kb.index.search(embeddings, 1)])
        retrieved = {chunk for h in history for chunk in h["retrieved"]} & document_of.keys()
        found = {document_of[chunk] for chunk in retrieved}
        never = sorted(document_label(documents[d]) for d in documents if d not in found)
        add("coverage", *coverage_findings(recent, similarities, embeddings, len(retrieved), counts["chunks"], never,
                                           len(history), config.health))
    steps.advance()
    if len(embeddings) >= MIN_QUERY_SAMPLE:
        queries, query_ids, source = embeddings, None, "the served questions"
    else:
        rng = np.random.default_rng(0)
        proxies = [sample[i] for i in rng.permutation(len(sample))[:CROWDING_PROXIES]]
        queries = np.stack([row[4] for row in proxies]) if proxies else np.zeros((0, 0), dtype=np.float32)
        query_ids, source = [row[0] for row in proxies], "sampled passages standing in for questions"
    add("content", *crowding_findings(kb.index, config, documents, families, queries, query_ids, document_of, source))
    add("drift", *corpus_drift_findings(store.snapshots(), config.health))
    steps.advance()
    if probe_path is not None and embedder is not None:
        add("coverage", *probe_findings(store, project.retriever, probe_path, config.retrieval.k, record=record_probe))
    steps.advance()
    return report


def _embedder(kb, report: HealthReport, *, required: bool):
    """The knowledge base's embedder; when it cannot be loaded, a finding says what was left unchecked (an error
    raised instead where the user asked for a probe run, which needs it)."""
    try:
        return kb.embedder
    except RagtuneError as error:
        if required:
            raise
        if not any(f.check == "embedder_mismatch" for f in report.findings):
            report.findings.append(Finding(
                "consistency", "embedder_unavailable", "error",
                f"the embedder cannot be loaded ({error.message}): coverage, query drift and the probe set were "
                "not checked", error.hint or "install or configure the embedder the knowledge base was built with"))
        return None


