"""Freshness: documents not updated for long, documents superseded by a newer near-copy, and sources that are gone
from their origin (a deleted file, a URL that answers 404 or not at all) but still answered from."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from ragtune.config import HealthConfig
from ragtune.health.content import Families, document_label
from ragtune.health.findings import EXAMPLES, Finding
from ragtune.knowledge.store import KnowledgeStore

DAY = 86_400.0
URL_TIMEOUT_S = 5.0
MAX_URLS = 50  # URL sources asked per run (in parallel); the rest are counted as unchecked
GONE_STATUSES = (404, 410)


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
            [f"{s['source']}: {(now - at) / DAY:.0f} days" for s, at in stale[:EXAMPLES]]))
    superseded = _superseded(documents, families)
    if superseded:
        findings.append(Finding(
            "freshness", "superseded_documents", "warning",
            f"{len(superseded)} documents are older near-copies of a newer one: answers may quote the outdated text",
            "remove the older copies at the origin and ingest with --prune", {"documents": len(superseded)},
            [f"{document_label(documents[old])} (superseded by {document_label(documents[new])})"
             for old, new in superseded[:EXAMPLES]]))
    gone, gone_count, unchecked = _gone_from_origin(sources, config.check_urls)
    if gone:
        findings.append(Finding(
            "freshness", "gone_from_origin", "warning",
            f"{gone_count} sources are gone from their origin but still answered from",
            "ingest the directory again with --prune (or `DELETE /v1/documents/...`) to stop citing them",
            {"sources": gone_count, "urls_unchecked": unchecked}, gone))
    ages = [(now - at) / DAY for _, at in dated]
    metrics = {"sources": len(sources), "stale": len(stale), "superseded": len(superseded), "gone": gone_count,
               "urls_unchecked": unchecked, "median_age_days": round(float(np.median(ages)), 1) if ages else None}
    return findings, metrics


def _superseded(documents: dict[int, dict], families: Families) -> list[tuple[int, int]]:
    """(older document, the newest of its family) for each family member strictly older than the newest and from
    another source (the rows of one source share its date: none supersedes another)."""
    superseded = []
    for group in families.members.values():
        present = [d for d in group if d in documents]
        if len(present) < 2:
            continue
        when = {d: documents[d]["modified_at"] or documents[d]["ingested_at"] for d in present}
        newest = max(present, key=lambda d: when[d])
        superseded += [(d, newest) for d in present
                       if when[d] < when[newest] and documents[d]["source"] != documents[newest]["source"]]
    return superseded


def _gone_from_origin(sources: list[dict], check_urls: bool) -> tuple[list[str], int, int]:
    """Examples of sources gone from their origin (a missing folder once for all its sources), how many are gone,
    and how many URL sources were not asked."""
    gone, urls, missing_roots = [], [], defaultdict(int)
    for source in sources:
        if source["kind"] == "url":
            urls.append(source["source"])
        elif source["kind"] != "sql":
            root = Path(source["root"])
            if not root.is_dir():
                missing_roots[source["root"]] += 1
            elif not (root / source["source"]).exists():
                gone.append(f"{source['source']}: file no longer in {source['root']}")
    count = len(gone) + sum(missing_roots.values())
    gone += [f"{n} sources under {root}: the folder is not on this machine (ingested elsewhere, or moved)"
             for root, n in missing_roots.items()]
    asked = urls[:MAX_URLS] if check_urls else []
    if asked:
        with httpx.Client(timeout=URL_TIMEOUT_S, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
            failing = [verdict for verdict in pool.map(lambda url: _url_gone(client, url), asked) if verdict]
        gone, count = gone + failing, count + len(failing)
    return gone, count, len(urls) - len(asked)


def _url_gone(client: httpx.Client, url: str) -> str | None:
    """Why the URL is gone (404 or 410, or no answer at all), or None; a server answering HEAD badly is asked GET."""
    try:
        status = client.head(url).status_code
        if status >= 400:
            status = client.get(url).status_code
    except httpx.HTTPError as error:
        return f"{url}: {type(error).__name__}"
    return f"{url}: HTTP {status}" if status in GONE_STATUSES else None
