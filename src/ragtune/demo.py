"""The bundled demo: a COVID-QA subset (12 articles, 282 questions; Apache-2.0, see demo_data/covidqa/README.md)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ragtune.progress import ProgressReporter
from ragtune.project import Project


def demo_corpus_dir() -> Path:
    """The bundled documents."""
    return Path(str(resources.files("ragtune") / "demo_data" / "covidqa" / "docs"))


def demo_questions(limit: int | None = None) -> list[dict]:
    """The bundled questions: `id`, `question`, `answer`, `answer_start`, `source`."""
    path = Path(str(resources.files("ragtune") / "demo_data" / "covidqa" / "questions.jsonl"))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit is not None else rows


def run_demo(project_dir: str | Path, questions: int = 3, progress: ProgressReporter | None = None) -> dict:
    """Ingest the bundled corpus into `project_dir` and answer the first `questions` bundled questions."""
    project = Project(project_dir)
    report = project.ingest([str(demo_corpus_dir())], progress=progress)
    answers = []
    for row in demo_questions(questions):
        answer = project.ask(row["question"])
        answers.append({"id": row["id"], "question": row["question"], "reference": row["answer"],
                        **answer.to_dict()})
    return {"project": str(project.workspace.root), "ingest": report.to_dict(), "answers": answers}
