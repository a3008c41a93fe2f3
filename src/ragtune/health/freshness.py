"""Freshness: documents not updated for long, documents superseded by a newer near-copy, and sources that are gone
from their origin (a deleted file, a URL that fails) but still answered from."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ragtune.config import HealthConfig
from ragtune.health.content import Families, document_label
from ragtune.health.findings import Finding
from ragtune.knowledge.store import KnowledgeStore

DAY = 86_400.0
URL_TIMEOUT_S = 5.0
MAX_URLS = 20


def freshness_findings(store: KnowledgeStore, config: HealthConfig, documents: dict[int, dict],
                       families: Families, now: float | None = None) -> tuple[list[Finding], dict]:
    now = now or time.time()
    sources = [s for s in store.source_list() if s["status"] == "indexed"]
    findings = []
    dated = [(s, s["modified_at"] or s["ingested_at"]) for s in sources]
    stale = sorted(((s, at) for s, at in dated if now - at > config.stale_after_days * DAY), key=lambda x: x[1])
    if stale:
        findings.append(Finding(
            "freshness", "stale_documents", "warning",
            f"{len(stale)} of {len(sources)} sources have not changed for over {config.stale_after_days:g} days",
            "check they are still true; update or remove them (ingest with --prune), or raise health.stale_after_days",
            {"sources": len(stale), "oldest_days": round((now - stale[0][1]) / DAY, 1)},
            [f"{s['source']}: {(now - at) / DAY:.0f} days" for s, at in stale]))
    superseded = []
    for group in families.members.values():
        dated_group = sorted(group, key=lambda d: documents[d]["modified_at"] or documents[d]["ingested_at"])
        newest = dated_group[-1]
        superseded += [(d, newest) for d in dated_group[:-1]]
    if superseded:
        findings.append(Finding(
            "freshness", "superseded_documents", "warning",
            f"{len(superseded)} documents are older near-copies of a newer one: answers may quote the outdated text",
            "remove the older copies at the origin and ingest with --prune", {"documents": len(superseded)},
            [f"{document_label(documents[old])} (superseded by {document_label(documents[new])})"
             for old, new in superseded]))
    gone = _gone_from_origin(sources, config.check_urls)
    if gone:
        findings.append(Finding(
            "freshness", "gone_from_origin", "warning",
            f"{len(gone)} sources are gone from their origin but still answered from",
            "ingest the directory again with --prune (or `DELETE /v1/documents/...`) to stop citing them",
            {"sources": len(gone)}, gone))
    ages = [(now - at) / DAY for _, at in dated]
    metrics = {"sources": len(sources), "stale": len(stale), "superseded": len(superseded), "gone": len(gone),
               "median_age_days": round(float(sorted(ages)[len(ages) // 2]), 1) if ages else None}
    return findings, metrics


def _gone_from_origin(sources: list[dict], check_urls: bool) -> list[str]:
    gone, urls = [], []
    for source in sources:
        if source["kind"] == "url":
            urls.append(source["source"])
        elif source["kind"] != "sql" and not (Path(source["root"]) / source["source"]).exists():
            gone.append(f"{source['source']}: file no longer in {source['root']}")
    if check_urls and urls:
        with httpx.Client(timeout=URL_TIMEOUT_S, follow_redirects=True) as client:
            for url in urls[:MAX_URLS]:
                try:
                    status = client.head(url).status_code
                    if status == 405:  # servers without HEAD
                        status = client.get(url).status_code
                except httpx.HTTPError as error:
                    gone.append(f"{url}: {type(error).__name__}")
                    continue
                if status >= 400:
                    gone.append(f"{url}: HTTP {status}")
    return gone
