"""The synthesized set's report, for a person to judge it in two minutes: counts per rejection reason, pass rate,
round-trip rate, document coverage, the kind mix, and kept and rejected items side by side."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.synthesis.checks import REASONS, CheckedItem
from ragtune.synthesis.sampling import KINDS

SAMPLE_SIZE = 8


def build_report(items: list[CheckedItem], planned, settings: dict, splits: dict[str, int], *, documents: int,
                 seed: int) -> dict:
    """The report as a dict (also written as JSON)."""
    kept = [item.fields for item in items if not item.reason]
    reasons = Counter(item.reason for item in items if item.reason)
    reached_round_trip = len(kept) + reasons["no_round_trip"]
    rng = random.Random(seed)
    rejected = [item for item in items if item.reason]
    seconds = settings.get("generation_seconds")
    return {
        "model": settings["model"], "requested": settings["n"], "planned": len(planned), "kept": len(kept),
        "pass_rate": len(kept) / len(items) if items else 0.0,
        "round_trip_rate": len(kept) / reached_round_trip if reached_round_trip else None,
        "rejected": {reason: reasons[reason] for reason in REASONS if reasons[reason]},
        "reasons": REASONS,
        "kinds": {kind: {"planned": sum(p.kind == kind for p in planned),
                         "kept": sum(row["kind"] == kind for row in kept)} for kind in KINDS},
        "coverage": {"documents": documents, "planned": len({p.source for p in planned}),
                     "kept": len({row["source"] for row in kept})},
        "items_per_minute": round(60 * len(items) / seconds, 1) if seconds else None,
        "splits": splits,
        "sample_kept": [_shown(row) for row in rng.sample(kept, min(SAMPLE_SIZE, len(kept)))],
        "sample_rejected": [{**_shown(item.fields), "reason": item.reason}
                            for item in rng.sample(rejected, min(SAMPLE_SIZE, len(rejected)))],
    }


def _shown(fields: dict) -> dict:
    return {"question": fields["question"] or fields["reply"].strip()[:200], "answer": fields["answer"],
            "source": fields["source"], "kind": fields["kind"]}


def write_report(report: dict, markdown: Path, as_json: Path) -> None:
    write_bytes_atomically(as_json, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
    write_bytes_atomically(markdown, render_markdown(report).encode("utf-8"))


def render_markdown(report: dict) -> str:
    rate = report["round_trip_rate"]
    lines = [f"# Synthesized questions: {report['kept']} kept of {report['planned']} written by {report['model']}",
             "", f"Pass rate **{report['pass_rate']:.0%}**; round trip (the question retrieves its own chunk) "
             f"{'n/a' if rate is None else f'{rate:.0%}'}; documents covered {report['coverage']['kept']} of "
             f"{report['coverage']['documents']}; splits " + ", ".join(f"{k} {v}" for k, v in report["splits"].items())
             + (f"; {report['items_per_minute']} items per minute." if report["items_per_minute"] else "."),
             "", "| rejected because | items |", "|---|---|"]
    lines += [f"| {REASONS[reason]} | {count} |" for reason, count in report["rejected"].items()] or ["| (none) | 0 |"]
    lines += ["", "| kind | planned | kept |", "|---|---|---|"]
    lines += [f"| {kind} | {c['planned']} | {c['kept']} |" for kind, c in report["kinds"].items()]
    lines += ["", "## Kept and rejected, side by side", "", "| kept | rejected (reason) |", "|---|---|"]
    kept, rejected = report["sample_kept"], report["sample_rejected"]
    for i in range(max(len(kept), len(rejected))):
        left = _cell(kept[i]) if i < len(kept) else ""
        right = f"{_cell(rejected[i])} ({rejected[i]['reason']})" if i < len(rejected) else ""
        lines.append(f"| {left} | {right} |")
    return "\n".join(lines) + "\n"


def _cell(row: dict) -> str:
    text = f"**Q** {row['question']} **A** {row['answer']} ({row['source']}, {row['kind']})"
    return text.replace("|", "\\|").replace("\n", " ")
