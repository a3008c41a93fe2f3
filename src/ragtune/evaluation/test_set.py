"""Held-out questions: Q&A JSONL rows with a reference answer, optional `choices` and optional gold document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragtune.data import DatasetSpec, load_examples
from ragtune.errors import RagtuneError

GOLD_FIELDS = ("source", "document", "doc_id")  # a row's gold document, when the data names it


@dataclass
class TestQuestion:
    id: str
    question: str
    reference: str
    choices: list[str] | None = None
    gold_source: str | None = None  # file name (or key) of the document holding the answer

    def to_dict(self) -> dict:
        return {"id": self.id, "question": self.question, "answer": self.reference, "choices": self.choices,
                "source": self.gold_source}


def load_test_set(path: Path) -> list[TestQuestion]:
    """The questions of a Q&A JSONL file (malformed rows are errors here: a test set must be exact)."""
    examples, removed = load_examples(DatasetSpec(str(path)), objective="sft")
    if removed:
        first = removed[0]
        raise RagtuneError(f"{first['origin']}: {first['reason']}" + (f" ({first['detail']})" if first.get("detail")
                                                                     else ""),
                           f"fix the row; {len(removed)} row(s) of the test set are unusable")
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    questions = []
    for example in examples:
        if not example.question:
            raise RagtuneError(f"{example.origin}: a test row needs `question` and `answer` fields",
                               "evaluate on Q&A JSONL rows")
        row = json.loads(lines[int(example.origin.rsplit(":", 1)[1]) - 1])
        gold = next((str(row[key]) for key in GOLD_FIELDS if row.get(key)), None)
        questions.append(TestQuestion(example.id, example.question, example.answer, example.choices, gold))
    if not questions:
        raise RagtuneError(f"{path}: no questions", "the test set needs at least one Q&A row")
    return questions


def write_test_set(questions: list[TestQuestion], path: Path) -> Path:
    """Write questions as Q&A JSONL (the format load_test_set reads)."""
    path.write_text("".join(json.dumps({k: v for k, v in q.to_dict().items() if v is not None}, ensure_ascii=False)
                            + "\n" for q in questions), encoding="utf-8")
    return path
