"""Consistency: the database sound, the derived indexes holding exactly the store's chunks, the stored vectors made
by the configured embedder. Read from disk before anything syncs the indexes, so a broken index is seen as it is."""

from __future__ import annotations

import numpy as np

from ragtune.health.findings import Finding
from ragtune.knowledge.knowledge_base import KnowledgeBase
from ragtune.knowledge.store import SCHEMA_VERSION

REBUILD = "delete {index_dir} and run `ragtune status --project {project}`, which rebuilds the indexes from the store"


def consistency_findings(kb: KnowledgeBase) -> tuple[list[Finding], dict]:
    """Findings and measurements of the store against its indexes and configuration."""
    store, findings = kb.store, []
    store_ids = store.chunk_ids()
    rebuild = REBUILD.format(index_dir=kb.workspace.index_dir, project=kb.workspace.root)
    problems = store.integrity_problems()
    if problems:
        findings.append(Finding("consistency", "database_integrity", "error",
                                f"the database fails SQLite's integrity checks ({len(problems)} problems)",
                                f"restore {store.path} from a backup, or delete {kb.workspace.state_dir} and ingest "
                                f"again", {"problems": len(problems)}, problems))
    indexes = {"vector index": kb.index.saved(store), "lexical index": kb.lexical.saved(store)}
    metrics = {"schema_version": int(store.get_meta("schema_version") or 0), "schema_version_read": SCHEMA_VERSION,
               "generation": store.generation, "chunks": len(store_ids), "store": store.describe()}
    for name, (generation, ids) in indexes.items():
        metrics[name.replace(" ", "_")] = {"generation": generation, "entries": None if ids is None else len(ids)}
        if generation is None:
            if len(store_ids):
                findings.append(Finding("consistency", "index_not_built", "info",
                                        f"the {name} has not been built yet", "nothing: the first search builds it"))
            continue
        orphans = np.setdiff1d(ids, store_ids)
        missing = np.setdiff1d(store_ids, ids)
        if generation != store.generation:
            findings.append(Finding("consistency", "index_stale", "info",
                                    f"the {name} was saved at store generation {generation}, the store is at "
                                    f"{store.generation}", "nothing: the next search (or `ragtune status`) brings it "
                                    "up to date", {"index_generation": generation,
                                                   "store_generation": store.generation}))
        elif len(orphans) or len(missing):
            findings.append(Finding(
                "consistency", "index_out_of_step", "error",
                f"the {name} claims to be current but holds {len(orphans)} chunks the store no longer has and "
                f"lacks {len(missing)} it has", rebuild,
                {"orphans": len(orphans), "missing": len(missing), "generation": generation},
                [f"orphan chunk {i}" for i in orphans[:5]] + [f"missing chunk {i}" for i in missing[:5]]))
    configured, embedded_with = kb.config.models.embedder, store.get_meta("embedder")
    metrics["embedder"] = {"configured": configured, "stored_vectors": embedded_with}
    if len(store_ids) and embedded_with and embedded_with != configured:
        findings.append(Finding(
            "consistency", "embedder_mismatch", "error",
            f"the stored vectors were made by '{embedded_with}' but ragtune.yaml configures '{configured}': queries "
            "and chunks would be compared across models",
            f"set models.embedder: {embedded_with} in ragtune.yaml, or delete {kb.workspace.state_dir} and ingest "
            "again to re-embed", {"configured": configured, "stored": embedded_with}))
    return findings, metrics
