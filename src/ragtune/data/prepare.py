"""Data preparation for fine-tuning: load, clean, build RAFT passages, split, check leakage, weight the mixture,
and account for every row in a report."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragtune.data.encoding import token_length
from ragtune.data.examples import Example
from ragtune.data.raft import CANDIDATES_PER_PASSAGE, GoldFinder, build_raft_examples
from ragtune.data.report import DataReport
from ragtune.data.sources import DatasetSpec, load_examples
from ragtune.errors import RagtuneError
from ragtune.knowledge.cleaning import NearDuplicateIndex, content_hash
from ragtune.progress import ProgressReporter, SilentProgress

SPLITS = ("train", "val", "test")
FEW_ROWS = 100  # fewer training rows than this: a fine-tune learns format and style more than facts
RETRIEVAL_BATCH = 64


class PrepareOptions(BaseModel):
    """How training data is cleaned, split and mixed."""

    model_config = ConfigDict(extra="forbid")

    objective: Literal["sft", "cpt", "raft"] = "sft"
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    max_seq_length: int = Field(512, ge=16)
    length_percentile: float | None = Field(99.0, gt=0, le=100, description="Rows longer than this percentile of "
                                            "the training set are removed as outliers (None keeps them).")
    min_rows_for_length_outliers: int = Field(100, ge=1)
    near_duplicate_threshold: float = Field(0.9, gt=0, le=1)
    leakage: Literal["drop", "flag"] = "drop"
    raft_k: int = Field(4, ge=1, description="Passages per RAFT row.")
    raft_gold_fraction: float = Field(0.8, ge=0, le=1, description="Share of RAFT rows that include the gold "
                                                                   "passage.")

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> "PrepareOptions":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self


@dataclass
class PreparedData:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    report: DataReport


@dataclass
class _Source:
    """One dataset and what is left of it after each step."""

    spec: DatasetSpec
    split: str
    examples: list[Example]
    removed: list[dict] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return len(self.examples) + len(self.removed)


def prepare_data(train: list[DatasetSpec], *, val: list[DatasetSpec] | None = None,
                 test: list[DatasetSpec] | None = None, options: PrepareOptions, tokenizer, knowledge_base=None,
                 progress: ProgressReporter = SilentProgress()) -> PreparedData:
    """Training, validation and test examples from datasets, with a report of every step.

    Validation and test rows are split off the training data (seeded) unless given. `tokenizer` measures
    row lengths as training will see them; `knowledge_base` supplies RAFT passages and the `kb` dataset.
    """
    if not train:
        raise RagtuneError("no training data given", "pass at least one training dataset, e.g. train.jsonl")
    report = DataReport(options.objective, options.model_dump())
    sources = _load(train, val or [], test or [], options, knowledge_base, progress)
    report.stages["loaded"] = sum(source.loaded for source in sources)
    _remove_duplicates(sources, options, report, progress)
    report.stages["after_cleaning"] = _count(sources)
    if options.objective == "raft":
        _build_raft(sources, options, knowledge_base, report, progress)
        report.stages["after_raft"] = _count(sources)
    lengths = _measure_lengths(sources, tokenizer, progress)
    if options.objective != "cpt":  # CPT texts are cut into blocks: no length limit
        _remove_long_rows(sources, lengths, options)
        report.stages["after_length"] = _count(sources)
    kept_lengths = [lengths[id(e)] for source in sources for e in source.examples]
    if kept_lengths:
        report.lengths = {"p50": int(np.percentile(kept_lengths, 50)), "p95": int(np.percentile(kept_lengths, 95)),
                          "max": max(kept_lengths)}
    train_rows, val_rows, test_rows = _split(sources, options, bool(val), bool(test), report)
    train_examples = _weight(train_rows, sources, options.seed)
    report.splits = {"train": len(train_rows), "val": len(val_rows), "test": len(test_rows),
                     "train_weighted": len(train_examples)}
    report.mixture = dict(sorted(Counter(e.task for e in train_examples).items()))
    report.sources = [{"path": s.spec.path, "split": s.split, "task": s.spec.task or "default",
                       "weight": s.spec.weight, "loaded": s.loaded, "removed": len(s.removed),
                       "kept": len(s.examples)} for s in sources]
    report.removed = [row for source in sources for row in source.removed]
    report.warnings += _warnings(report, sources, options)
    return PreparedData(train_examples, val_rows, test_rows, report)


def _load(train, val, test, options: PrepareOptions, knowledge_base, progress: ProgressReporter) -> list[_Source]:
    task = progress.task("loading datasets", total=len(train) + len(val) + len(test))
    sources = []
    for split, specs in zip(SPLITS, (train, val, test)):
        for spec in specs:
            examples, removed = load_examples(spec, objective=options.objective, knowledge_base=knowledge_base)
            sources.append(_Source(spec, split, examples, removed))
            task.advance()
    return sources


class _DuplicateFinder:
    """Rows seen so far, by content hash (exact duplicates) and MinHash of their comparison text (near ones)."""

    def __init__(self, threshold: float):
        self._exact: dict[str, str] = {}
        self._near = NearDuplicateIndex(threshold)
        self._origins: list[str] = []

    def find(self, example: Example) -> tuple[str, str] | None:
        """("exact" | "near", origin of the earlier row) when `example` repeats one, else None."""
        kept = self._exact.get(_exact_key(example))
        if kept is not None:
            return "exact", kept
        near = self._near.find(self._near.signature(example.comparison_text()))
        return ("near", self._origins[int(near)]) if near is not None else None

    def add(self, example: Example) -> None:
        self._exact.setdefault(_exact_key(example), example.origin)
        self._near.add(str(len(self._origins)), self._near.signature(example.comparison_text()))
        self._origins.append(example.origin)


def _exact_key(example: Example) -> str:
    return content_hash(example.text or "\n".join(f"{m['role']}: {m['content']}" for m in example.messages))


def _remove_duplicates(sources: list[_Source], options: PrepareOptions, report: DataReport,
                       progress: ProgressReporter) -> None:
    """Drop rows repeating an earlier row of the same split (the first one is kept)."""
    task = progress.task("finding duplicates", total=_count(sources))
    for split in SPLITS:
        finder = _DuplicateFinder(options.near_duplicate_threshold)
        for source in (s for s in sources if s.split == split):
            kept = []
            for example in source.examples:
                match = finder.find(example)
                if match is None:
                    finder.add(example)
                    kept.append(example)
                else:
                    kind, original = match
                    report.duplicates.append({"origin": example.origin, "kind": kind, "kept": original})
                    source.removed.append({"origin": example.origin, "reason": f"{kind} duplicate",
                                           "detail": f"of {original}"})
                task.advance()
            source.examples = kept


def _build_raft(sources: list[_Source], options: PrepareOptions, knowledge_base, report: DataReport,
                progress: ProgressReporter) -> None:
    if knowledge_base is None or not knowledge_base.store.counts()["chunks"]:
        where = f" in {knowledge_base.workspace.root}" if knowledge_base is not None else ""
        raise RagtuneError(f"raft needs passages from the knowledge base, and the knowledge base{where} is empty",
                           "run `ragtune ingest` first")
    retriever = knowledge_base.retriever()
    questions = list(dict.fromkeys(e.question for source in sources for e in source.examples))
    n = CANDIDATES_PER_PASSAGE * options.raft_k
    task = progress.task("retrieving RAFT passages", total=len(questions))
    hits = {}
    for start in range(0, len(questions), RETRIEVAL_BATCH):
        batch = questions[start:start + RETRIEVAL_BATCH]
        hits.update(zip(batch, retriever.search_many(batch, n)))
        task.advance(len(batch))
    finder = GoldFinder(chunk_by_id=lambda chunk_id: next(iter(knowledge_base.store.hits([(chunk_id, 1.0)])), None),
                        similarity=lambda answer, texts: (knowledge_base.embedder.encode(texts)
                                                          @ knowledge_base.embedder.encode([answer])[0]).tolist())
    for source in sources:
        source.examples, removed, chosen_by = build_raft_examples(
            source.examples, lambda question, count: hits[question][:count], k=options.raft_k,
            gold_fraction=options.raft_gold_fraction, seed=options.seed, gold_finder=finder)
        source.removed += removed
        for how, count in chosen_by.items():
            report.raft_gold[how] = report.raft_gold.get(how, 0) + count


def _measure_lengths(sources: list[_Source], tokenizer, progress: ProgressReporter) -> dict[int, int]:
    """Token length of every row, by id() of its example."""
    task = progress.task("measuring lengths", total=_count(sources))
    lengths = {}
    for source in sources:
        for example in source.examples:
            lengths[id(example)] = token_length(example, tokenizer)
            task.advance()
    return lengths


def _remove_long_rows(sources: list[_Source], lengths: dict[int, int], options: PrepareOptions) -> None:
    """Drop rows over max_seq_length, then training rows above the length percentile (on large enough sets)."""
    limit = options.max_seq_length
    for source in sources:
        source.examples = _drop(source, lambda e: lengths[id(e)] > limit, "longer than max_seq_length",
                                lambda e: f"{lengths[id(e)]} tokens > {limit}")
    train_lengths = [lengths[id(e)] for s in sources if s.split == "train" for e in s.examples]
    if options.length_percentile is None or len(train_lengths) < options.min_rows_for_length_outliers:
        return
    threshold = float(np.percentile(train_lengths, options.length_percentile))
    for source in (s for s in sources if s.split == "train"):
        source.examples = _drop(source, lambda e: lengths[id(e)] > threshold, "length outlier",
                                lambda e: f"{lengths[id(e)]} tokens, above the {options.length_percentile:g}th "
                                          f"percentile ({threshold:.0f} tokens)")


def _drop(source: _Source, condition, reason: str, detail) -> list[Example]:
    """The examples of `source` that do not meet `condition`; the others are recorded as removed."""
    kept = []
    for example in source.examples:
        if condition(example):
            source.removed.append({"origin": example.origin, "reason": reason, "detail": detail(example)})
        else:
            kept.append(example)
    return kept


def _split(sources: list[_Source], options: PrepareOptions, has_val: bool, has_test: bool,
           report: DataReport) -> tuple[list[tuple[int, Example]], list[Example], list[Example]]:
    """(train rows with their source index, val, test): a seeded split of the training rows, except for the
    splits given explicitly, whose rows repeating a train row are dropped or flagged."""
    pool = [(i, e) for i, source in enumerate(sources) if source.split == "train" for e in source.examples]
    if not pool:
        raise RagtuneError(f"no training rows are left: {_summary(sources)}",
                           "fix the rows named in the report, or raise max_seq_length if rows are too long")
    random.Random(options.seed).shuffle(pool)
    n_test = 0 if has_test else _carved(len(pool), options.test_fraction)
    n_val = 0 if has_val else _carved(len(pool), options.val_fraction)
    if n_test + n_val >= len(pool):
        raise RagtuneError(f"only {len(pool)} training rows: too few to split off validation and test rows",
                           "add data, pass --val/--test files, or set the val and test fractions to 0")
    test_rows = [e for _, e in pool[:n_test]]
    val_rows = [e for _, e in pool[n_test:n_test + n_val]]
    train_rows = pool[n_test + n_val:]
    finder = _DuplicateFinder(options.near_duplicate_threshold)
    for _, example in train_rows:
        finder.add(example)
    for source in (s for s in sources if s.split != "train"):
        source.examples = _check_leakage(source, finder, options, report)
        (val_rows if source.split == "val" else test_rows).extend(source.examples)
    return train_rows, val_rows, test_rows


def _carved(total: int, fraction: float) -> int:
    return max(1, round(total * fraction)) if fraction > 0 and total > 1 else 0


def _check_leakage(source: _Source, train: _DuplicateFinder, options: PrepareOptions,
                   report: DataReport) -> list[Example]:
    kept = []
    for example in source.examples:
        match = train.find(example)
        if match is not None:
            kind, original = match
            action = "dropped" if options.leakage == "drop" else "flagged"
            report.leakage.append({"origin": example.origin, "split": source.split, "kind": kind,
                                   "train_origin": original, "action": action})
            if options.leakage == "drop":
                source.removed.append({"origin": example.origin, "reason": "repeats a train row",
                                       "detail": f"{kind} duplicate of {original}"})
                continue
        kept.append(example)
    return kept


def _weight(train_rows: list[tuple[int, Example]], sources: list[_Source], seed: int) -> list[Example]:
    """Apply each dataset's mixture weight (2: every row twice, 0.5: a seeded half, 1.5: all and a seeded
    half), then shuffle the rows (seeded)."""
    by_source: dict[int, list[Example]] = defaultdict(list)
    for index, example in train_rows:
        by_source[index].append(example)
    weighted = []
    for index, examples in by_source.items():
        weight = sources[index].spec.weight
        whole = int(weight)
        extra = random.Random(f"{seed}:{index}").sample(examples, round(len(examples) * (weight - whole)))
        weighted += examples * whole + extra
    random.Random(seed).shuffle(weighted)
    return weighted


def _warnings(report: DataReport, sources: list[_Source], options: PrepareOptions) -> list[str]:
    warnings = []
    train_rows = report.splits["train"]
    if options.objective != "cpt" and train_rows < FEW_ROWS:
        warnings.append(f"only {train_rows} training rows: a fine-tune on so few rows learns the answer format and "
                        "style rather than new facts, and overfits within a few epochs; watch the validation loss, "
                        "and keep facts in the knowledge base (RAG)")
    if not report.splits["val"]:
        warnings.append("no validation rows: nothing will show overfitting; pass --val or a val fraction above 0")
    flagged = sum(1 for row in report.leakage if row["action"] == "flagged")
    if flagged:
        warnings.append(f"{flagged} val/test rows repeat train rows (kept because leakage=flag): their scores will "
                        "overstate how well the model generalises")
    ignored = [s.spec.path for s in sources if s.split != "train" and s.spec.weight != 1]
    if ignored:
        warnings.append(f"weights apply to training data only; ignored for {', '.join(ignored)}")
    return warnings


def _count(sources: list[_Source]) -> int:
    return sum(len(source.examples) for source in sources)


def _summary(sources: list[_Source]) -> str:
    """`N rows removed (a: 3, b: 2)` for the training datasets."""
    removed = [row["reason"] for source in sources if source.split == "train" for row in source.removed]
    reasons = ", ".join(f"{reason}: {count}" for reason, count in Counter(removed).most_common())
    return f"{len(removed)} rows were removed ({reasons})" if removed else "the datasets have no rows"


def write_prepared(data: PreparedData, out_dir: str | Path) -> Path:
    """Write train/val/test.jsonl, report.json and report.md to `out_dir`; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, examples in zip(SPLITS, (data.train, data.val, data.test)):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for example in examples:
                handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
    (out / "report.json").write_text(json.dumps(data.report.to_dict(), ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")
    (out / "report.md").write_text(data.report.to_markdown(), encoding="utf-8")
    return out


def is_prepared_dir(path: str | Path) -> bool:
    """Whether `path` is a folder written by `write_prepared`."""
    path = Path(path)
    return (path / "train.jsonl").is_file() and (path / "report.json").is_file()


def read_prepared(path: str | Path) -> PreparedData:
    """The data `write_prepared` wrote to `path`."""
    path = Path(path)
    if not is_prepared_dir(path):
        raise RagtuneError(f"{path} is not a prepared dataset (it needs train.jsonl and report.json)",
                           "create one with `ragtune data prepare`")
    splits = {}
    for split in SPLITS:
        file = path / f"{split}.jsonl"
        lines = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
        splits[split] = [Example.from_dict(json.loads(line)) for line in lines if line.strip()]
    report = DataReport(**json.loads((path / "report.json").read_text(encoding="utf-8")))
    return PreparedData(splits["train"], splits["val"], splits["test"], report)
