"""COVID-QA for benchmarks: the full development set when present, else the bundled subset."""

from __future__ import annotations

import json
import re
from pathlib import Path

FULL_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "covidqa" / "200423_covidQA.json"


def materialise(target: Path, dataset: Path = FULL_DATASET) -> tuple[Path, list[dict]]:
    """Write one .txt per article under `target/docs` and return it with the questions
    (`id`, `question`, `answer`, `source`)."""
    docs = target / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    if not dataset.exists():
        from ragtune.demo import demo_corpus_dir, demo_questions

        return demo_corpus_dir(), demo_questions()
    questions = []
    for article in json.loads(dataset.read_text())["data"]:
        paragraph = article["paragraphs"][0]
        name = f"{paragraph['document_id']}.txt"
        (docs / name).write_text(paragraph["context"], encoding="utf-8")
        for qa in paragraph["qas"]:
            questions.append({"id": str(qa["id"]), "question": qa["question"].strip(),
                              "answer": qa["answers"][0]["text"].strip(), "source": name})
    return docs, questions


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
