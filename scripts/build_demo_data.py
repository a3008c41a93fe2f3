"""Rebuild the bundled demo corpus (a COVID-QA subset) from the full dataset.

Usage: python scripts/build_demo_data.py ../shared/data/covidqa/200423_covidQA.json
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

DOCUMENT_IDS = [2643, 2459, 2555, 776, 1560, 185, 2526, 2620, 2642, 2634, 1671, 1604]
TARGET = Path(__file__).resolve().parents[1] / "src" / "ragtune" / "demo_data" / "covidqa"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def main(dataset: Path) -> None:
    articles = {a["paragraphs"][0]["document_id"]: a["paragraphs"][0] for a in json.loads(dataset.read_text())["data"]}
    docs_dir = TARGET / "docs"
    shutil.rmtree(docs_dir, ignore_errors=True)
    docs_dir.mkdir(parents=True)
    questions = []
    for doc_id in DOCUMENT_IDS:
        article = articles[doc_id]
        context = article["context"]
        name = f"{doc_id}-{slug(context.splitlines()[0])}.txt"
        (docs_dir / name).write_text(context, encoding="utf-8")
        for qa in article["qas"]:
            answer = qa["answers"][0]
            questions.append({"id": str(qa["id"]), "question": qa["question"].strip(),
                              "answer": answer["text"].strip(), "answer_start": answer["answer_start"],
                              "source": name})
    with (TARGET / "questions.jsonl").open("w", encoding="utf-8") as out:
        for row in questions:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    shutil.copy(dataset.parent / "LICENSE", TARGET / "LICENSE")
    print(f"{len(DOCUMENT_IDS)} documents, {len(questions)} questions -> {TARGET}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
