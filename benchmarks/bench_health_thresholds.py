"""How the health defaults were measured on the bundled COVID-QA articles with the packaged embedder.

    python benchmarks/bench_health_thresholds.py [--out results.json]

- `health.weak_similarity`: the closest chunk's cosine for the 282 bundled questions (all answerable from the
  articles) against 30 questions about other things; for each threshold, the share of answerable questions flagged
  as gaps and of off-topic ones caught.
- `health.near_duplicate_similarity`: the highest cosine between chunks of two different articles, against that of an
  edited copy's chunks (every tenth word replaced, which ingest's MinHash check lets through) with the original.
  Baseline in the same run: the articles as they are.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ragtune.demo import demo_corpus_dir, demo_questions
from ragtune.project import Project
from reporting import emit

OFF_TOPIC = [
    "What is the capital of Australia?", "How do I reset my router password?", "Who won the 1998 football world cup?",
    "What is a good recipe for banana bread?", "How many moons does Jupiter have?",
    "What is the tallest mountain in Europe?", "How do I change a flat tyre?", "What year did the Berlin wall fall?",
    "Which programming language is best for web development?", "What is the price of a train ticket to Lyon?",
    "How do I file my income tax return?", "Who wrote Pride and Prejudice?",
    "What is the boiling point of water at high altitude?", "How do I train a puppy to sit?",
    "What is the best time to visit Japan?", "How does a jet engine work?", "What are the rules of castling in chess?",
    "How do I bake sourdough bread?", "What is our company's vacation policy?", "How do I request a new laptop?",
    "When is the next board meeting?", "What is the stock price of Apple?", "How do solar panels make electricity?",
    "What is the plot of Hamlet?", "How do I install Python on Windows?", "Which team won the NBA finals in 2015?",
    "What is the speed of sound?", "How do I knit a scarf?", "What is the population of Canada?",
    "How do I cancel my gym membership?"]


def best_similarity(project: Project, questions: list[str]) -> np.ndarray:
    vectors = project.kb.embedder.encode(questions)
    return np.array([hits[0][1] for hits in project.kb.index.search(vectors, 1)])


def cross_document_best(project: Project) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each chunk's highest cosine with a chunk of another document, with the chunks' document ids and ids."""
    store = project.kb.store
    ids, matrix = store.embeddings()
    document_of = store.chunk_documents()
    documents = np.array([document_of[i] for i in ids])
    similarity = matrix @ matrix.T
    similarity[documents[:, None] == documents[None, :]] = -1
    return similarity.max(axis=1), documents, ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        articles = sorted(demo_corpus_dir().glob("*.txt"))
        for article in articles:
            (docs / article.name).write_text(article.read_text(encoding="utf-8"), encoding="utf-8")
        project = Project(Path(tmp) / "project")
        project.ingest([str(docs)])
        answerable = best_similarity(project, [q["question"] for q in demo_questions()])
        off_topic = best_similarity(project, OFF_TOPIC)
        thresholds = {f"{t:.2f}": {"answerable_flagged": round(float((answerable < t).mean()), 3),
                                   "off_topic_caught": round(float((off_topic < t).mean()), 3)}
                      for t in (0.25, 0.30, 0.35, 0.40)}
        baseline, _, _ = cross_document_best(project)
        words = articles[0].read_text(encoding="utf-8").split(" ")
        words[::10] = ["formerly"] * len(words[::10])
        (docs / f"copy-{articles[0].name}").write_text(" ".join(words), encoding="utf-8")
        report = project.ingest([str(docs)])
        copied, documents, _ = cross_document_best(project)
        copy_document = max(documents)
        emit({"weak_similarity": {"answerable_questions": len(answerable), "off_topic_questions": len(off_topic),
                                  "thresholds": thresholds},
              "near_duplicates": {
                  "copy_stored": not report.skipped_documents,
                  "baseline_articles_max_cross_document": round(float(baseline.max()), 3),
                  "edited_copy_chunks": {f"p{q}": round(float(np.percentile(copied[documents == copy_document], q)),
                                                        3) for q in (0, 10, 50, 90)}}}, args.out)


if __name__ == "__main__":
    main()
