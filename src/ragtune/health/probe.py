"""A fixed probe set (questions whose source is known, such as a comparison's test set) searched at every health run:
retrieval recall@k over time shows a knowledge base losing what it used to find."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.health.findings import Finding
from ragtune.knowledge.retrieval import Retriever
from ragtune.knowledge.store import KnowledgeStore

RECALL_DROP = 0.1  # a fall of recall@k below the first run's by this much is reported


def load_probe_set(path: Path) -> list[tuple[str, str]]:
    """(question, source key or glob) pairs from a JSONL file with `question` and `source` on every line."""
    if not path.is_file():
        raise RagtuneError(f"probe set {path} does not exist", "pass a JSONL file of {\"question\", \"source\"} lines "
                           "(a comparison's test set works) with --probe or health.probe_set")
    probes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RagtuneError(f"{path}:{number}: not valid JSON ({error.msg})", "write one JSON object per line")
        for field in ("question", "source"):
            if not isinstance(record, dict) or not isinstance(record.get(field), str) or not record[field].strip():
                raise RagtuneError(f"{path}:{number}: field '{field}' is missing or not a non-empty string",
                                   "give every line a question and the source key that answers it")
        probes.append((record["question"], record["source"]))
    if not probes:
        raise RagtuneError(f"probe set {path} holds no questions", "add {\"question\", \"source\"} lines")
    return probes


def probe_findings(store: KnowledgeStore, retriever: Retriever, path: Path, k: int, *, record: bool = True,
                   ) -> tuple[list[Finding], dict, dict]:
    """Search the probe questions, record recall@k (unless `record` is False), and compare it with the first
    recorded run on the same set."""
    probes = load_probe_set(path)
    results = retriever.search_many([question for question, _ in probes], k)
    missed = [question for (question, source), hits in zip(probes, results)
              if not any(hit.source == source or fnmatch.fnmatchcase(hit.source, source) for hit in hits)]
    recall = 1 - len(missed) / len(probes)
    if record:
        store.add_probe_run(str(path.resolve()), len(probes), k, recall)
    runs = [run for run in store.probe_runs() if run["probe_set"] == str(path.resolve()) and run["k"] == k]
    first = runs[0]["recall"] if runs else recall
    metrics = {"probe_set": str(path), "questions": len(probes), "k": k, f"recall_at_{k}": recall,
               "first_recall": first, "runs": len(runs)}
    findings = []
    if first - recall >= RECALL_DROP - 1e-9:  # recall is a ratio: 0.9 - 0.8 falls short of 0.1 in binary
        findings.append(Finding(
            "coverage", "probe_recall_drop", "warning",
            f"retrieval recall@{k} on the probe set fell from {first:.0%} to {recall:.0%}",
            "check which sources the missed questions need: were they removed, replaced or crowded out?",
            {"recall": recall, "first_recall": first, "questions": len(probes)}, missed))
    return findings, metrics, {"probe_recall": [[run["created_at"], run["recall"]] for run in runs]}
