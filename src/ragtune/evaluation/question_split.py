"""The comparison's data: training and test questions (a seeded split when no test file is given) and, for the
knowledge-update measurement, documents held back with the questions about them."""

from __future__ import annotations

import random
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.evaluation.experiment import Experiment
from ragtune.evaluation.metrics import normalize_answer
from ragtune.evaluation.test_set import TestQuestion, load_test_set, write_test_set
from ragtune.knowledge.loaders import KIND_BY_SUFFIX


def split_questions(experiment: Experiment, data_dir: Path, *, added: dict[str, str] | None = None) -> dict:
    """Write train/test question files under `data_dir` (plus the held-back share when `update_split` is set).
    `added`: synthetic questions already split by chunk ({"train": file, "test": file}): their training
    questions join the human ones, their test questions are written apart (`synthetic_test`) to be scored apart;
    with `update_split`, those about held-back documents are left out, so no strategy learns the new knowledge
    early."""
    data_dir.mkdir(parents=True, exist_ok=True)
    train = load_test_set(Path(experiment.train))
    if experiment.test:
        test = load_test_set(Path(experiment.test))
    else:
        train, test = _seeded_split(train, experiment.test_fraction, experiment.seed)
    limit = experiment.effective_budget().max_test_questions
    test = test[:limit] if limit else test
    split = {"documents": [str(Path(experiment.docs).resolve())]}
    if experiment.update_split:
        old_docs, new_docs = _split_documents(Path(experiment.docs), experiment.update_split, experiment.seed)
        train, train_new = _partition(train, new_docs)
        test, test_new = _partition(test, new_docs)
        if not test_new or not test:
            raise RagtuneError(f"holding back {len(new_docs)} of {len(old_docs) + len(new_docs)} documents leaves "
                               f"{len(test)} old and {len(test_new)} new test questions",
                               "choose another --update-split, or give questions a `source` field naming their "
                               "document")
        split.update(documents=[str(p) for p in old_docs], new_documents=[str(p) for p in new_docs],
                     train_new=str(write_test_set(train_new, data_dir / "train_new.jsonl")),
                     test_new=str(write_test_set(test_new, data_dir / "test_new.jsonl")),
                     new_train_questions=len(train_new), new_test_questions=len(test_new))
    if not train or not test:
        raise RagtuneError(f"{len(train)} training and {len(test)} test questions: both are needed",
                           "give more questions, or a separate --test file")
    if added:
        synthetic_train, synthetic_test = (load_test_set(Path(added[part])) for part in ("train", "test"))
        if experiment.update_split:
            new_docs = [Path(path) for path in split["new_documents"]]
            synthetic_train, synthetic_test = (_partition(questions, new_docs)[0]
                                               for questions in (synthetic_train, synthetic_test))
        synthetic_test = synthetic_test[:limit] if limit else synthetic_test
        if not synthetic_test:
            raise RagtuneError("none of the synthesized questions is left for testing apart from the human ones",
                               "synthesize more questions (--synthesize)")
        train = train + synthetic_train
        split.update(synthetic_test=str(write_test_set(synthetic_test, data_dir / "synthetic_test.jsonl")),
                     synthetic_train_questions=len(synthetic_train), synthetic_test_questions=len(synthetic_test))
    split.update(train=str(write_test_set(train, data_dir / "train.jsonl")),
                 test=str(write_test_set(test, data_dir / "test.jsonl")),
                 train_questions=len(train), test_questions=len(test))
    return split


def _seeded_split(questions: list[TestQuestion], fraction: float, seed: int):
    shuffled = list(questions)
    random.Random(seed).shuffle(shuffled)
    cut = max(1, round(len(shuffled) * fraction))
    return shuffled[cut:], shuffled[:cut]


def _split_documents(docs: Path, fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    if not docs.is_dir():
        raise RagtuneError(f"--update-split needs a directory of documents; {docs} is not one",
                           "pass --docs DIR with several documents")
    files = sorted(p for p in docs.rglob("*") if p.is_file() and p.suffix.lower() in KIND_BY_SUFFIX)
    if len(files) < 2:
        raise RagtuneError(f"{docs} holds {len(files)} document(s); holding some back needs at least 2",
                           "add documents or drop --update-split")
    shuffled = list(files)
    random.Random(seed).shuffle(shuffled)
    cut = min(len(files) - 1, max(1, round(len(files) * fraction)))
    return sorted(shuffled[cut:]), sorted(shuffled[:cut])


def _partition(questions: list[TestQuestion], new_docs: list[Path]) -> tuple[list[TestQuestion], list[TestQuestion]]:
    """(questions about the kept documents, questions about the held-back ones): by the row's `source` when it
    names a document, else by which document contains the answer."""
    names = {path.name for path in new_docs}
    texts = None
    old, new = [], []
    for question in questions:
        if question.gold_source:
            about_new = Path(question.gold_source).name in names
        else:
            texts = texts or [normalize_answer(p.read_text(encoding="utf-8", errors="replace")) for p in new_docs]
            about_new = any(normalize_answer(question.reference) in text for text in texts)
        (new if about_new else old).append(question)
    return old, new
