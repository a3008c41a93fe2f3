"""`ragtune data synthesize`: plan items over the knowledge base, have the generator write their questions (saved as
they come, so an interrupted run resumes without repeating them), check every item, split and report."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.atomic_files import write_bytes_atomically
from ragtune.errors import RagtuneError
from ragtune.progress import ProgressReporter, SilentProgress
from ragtune.synthesis.checks import REASONS, CheckedItem, CheckSettings, check_items
from ragtune.synthesis.questions import parse_question, write_questions
from ragtune.synthesis.report import build_report, write_report
from ragtune.synthesis.sampling import DEFAULT_MIX, MIN_SENTENCE_WORDS, plan_items

SPLITS = ("train", "val", "test")


@dataclass
class SynthesisOptions:
    n: int = 100
    model: str | None = None  # default: the project's generator
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    coverage: str = "size"  # or "even": the same share for every document
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    checks: CheckSettings = field(default_factory=CheckSettings)


@dataclass
class SynthesisResult:
    questions: Path  # every kept item
    splits: dict[str, Path]
    report: dict


def output_paths(out: Path) -> dict[str, Path]:
    """Where a run writes, next to `out` (the kept items): splits, rejected items, report, and the generation log."""
    stem = out.with_suffix("")
    return {"questions": out, **{split: stem.with_name(f"{stem.name}.{split}.jsonl") for split in SPLITS},
            "rejected": stem.with_name(f"{stem.name}.rejected.jsonl"),
            "report_md": stem.with_name(f"{stem.name}.report.md"),
            "report_json": stem.with_name(f"{stem.name}.report.json"),
            "generated": stem.with_name(f"{stem.name}.generated.jsonl")}


def synthesize(project, out: Path, options: SynthesisOptions, *, root: str | None = None,
               progress: ProgressReporter | None = None) -> SynthesisResult:
    """Build a checked question set from the project's chunks (only those of sources under `root` when given)."""
    progress = progress or SilentProgress()
    model = options.model or project.config.models.generator
    chunks = [(chunk_id, key, text) for chunk_id, source_root, key, _, text in project.kb.store.chunk_records()
              if root is None or source_root == root]
    if not chunks:
        raise RagtuneError("the knowledge base has no chunks to write questions about" if root is None else
                           f"no chunks come from {root}", "ingest documents first (`ragtune ingest PATH`), or pass "
                                                          "--docs PATH")
    planned = plan_items(chunks, options.n, mix=options.mix, coverage=options.coverage, seed=options.seed)
    if not planned:
        raise RagtuneError(f"none of the {len(chunks)} chunks has a sentence of {MIN_SENTENCE_WORDS} words or more "
                           "to ask about", "synthesize from longer documents, or write the questions by hand")
    paths = output_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"model": model, "n": options.n, "mix": options.mix, "coverage": options.coverage,
                "seed": options.seed, "root": root, "chunks": hashlib.sha256(
                    json.dumps([c[0] for c in chunks]).encode()).hexdigest()[:16]}
    replies = _generate(project, model, planned, paths["generated"], settings, progress)
    items = [CheckedItem({"index": p.index, "question": parse_question(replies[p.index]), "answer": p.answer,
                          "source": p.source, "chunk_id": p.chunk_id, "kind": p.kind, "answer_start": p.start,
                          "answer_end": p.end, "chunk": p.chunk, "reply": replies[p.index]}) for p in planned]
    check_items(items, project.retriever, options.checks)
    kept = [item.fields for item in items if not item.reason]
    splits = split_by_chunk(kept, options.val_fraction, options.test_fraction, options.seed)
    _write_jsonl(paths["rejected"], [{**_qa_row(item.fields), "reason": item.reason, "reply": item.fields["reply"]}
                                     for item in items if item.reason])
    report = build_report(items, planned, settings, {name: len(rows) for name, rows in splits.items()},
                          documents=len({c[1] for c in chunks}), seed=options.seed)
    write_report(report, paths["report_md"], paths["report_json"])
    if not kept:  # a set written earlier to the same place is left as it was
        reason, count = Counter(item.reason for item in items).most_common(1)[0]
        raise RagtuneError(f"none of the {len(items)} questions written by {model} passed the checks; most were "
                           f"rejected as {REASONS[reason]!r} ({count}); see {paths['report_md']} and "
                           f"{paths['rejected']}",
                           "use a stronger or instruction-tuned --model (a local path or an OpenAI-compatible "
                           "endpoint), or check that the endpoint returns text")
    for name, rows in (("questions", kept), *splits.items()):
        _write_jsonl(paths[name], [_qa_row(row) for row in rows])
    return SynthesisResult(out, {name: paths[name] for name in SPLITS}, report)


def _generate(project, model: str, planned, log: Path, settings: dict, progress: ProgressReporter) -> dict[int, str]:
    """Every planned item's reply; those in `log` from an earlier, interrupted run with the same settings are
    reused, the others generated and appended as each batch finishes."""
    done = _read_log(log, settings)
    todo = [item for item in planned if item.index not in done]
    task = progress.task(f"writing questions with {model}", total=len(planned))
    task.advance(len(planned) - len(todo))
    if todo:
        from ragtune.models.loading import load_generator

        engine = load_generator(model, context_tokens=project.config.generation.context_tokens)
        started = time.perf_counter()
        with log.open("a", encoding="utf-8") as out:
            if not done:
                out.write(json.dumps({"settings": settings}) + "\n")
            for item, reply in write_questions(engine, todo):
                out.write(json.dumps({"index": item.index, "reply": reply}) + "\n")
                out.flush()
                done[item.index] = reply
                task.advance()
        settings["generation_seconds"] = time.perf_counter() - started
    return done


def _read_log(log: Path, settings: dict) -> dict[int, str]:
    if not log.is_file():
        return {}
    lines = log.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0])["settings"] if lines else None
    except (ValueError, KeyError):
        header = None
    if header != settings:
        raise RagtuneError(f"{log} holds questions written with other settings (model, n, mix, seed or documents)",
                           "run again with the same settings to resume, or delete it (or choose another --out)")
    replies = {}
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line, cut short by an interruption: that item is generated again
        replies[record["index"]] = record["reply"]
    return replies


def split_by_chunk(rows: list[dict], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[dict]]:
    """Seeded train/val/test split by chunk: questions about the same chunk (paraphrases, other kinds) always land
    in the same split, so none leaks an answer from training into the test set."""
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["chunk_id"], []).append(row)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    targets = {"test": round(len(rows) * test_fraction), "val": round(len(rows) * val_fraction)}
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for chunk_id in order:
        name = next((name for name in ("test", "val") if len(splits[name]) < targets[name]), "train")
        splits[name] += groups[chunk_id]
    return splits


def _qa_row(fields: dict) -> dict:
    """ragtune's Q&A JSONL row for an item (the answer's span is relative to the chunk's text)."""
    return {"id": f"syn-{fields['index']}", "question": fields["question"], "answer": fields["answer"],
            "source": fields["source"], "chunk_id": fields["chunk_id"], "kind": fields["kind"],
            "answer_start": fields["answer_start"], "answer_end": fields["answer_end"]}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_bytes_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))

