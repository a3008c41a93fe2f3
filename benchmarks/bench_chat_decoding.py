"""Chat decoding: how much repetition penalty the server's default should carry, from repeated n-grams and F1.

    python benchmarks/bench_chat_decoding.py [--questions 16] [--penalties 1.0,1.1,1.2,1.3] [--max-tokens 160]
                                             [--out results.json]

The bundled COVID-QA questions, the demo corpus ingested into a fresh project, the packaged generator, greedy
decoding with --max-tokens new tokens (the project's chat default), strategies `base` (closed book) and `rag`,
each penalty in turn (1.0 = none, the baseline). Per penalty and strategy: the share of answers that loop (some
word 4-gram three times or more), the mean share of repeated word 4-grams, and token F1 against the reference.
Choice (printed as `choice`): among the penalties that lower neither strategy's F1 by more than 0.01 against no
penalty, the one with the fewest looping answers over both strategies, the smallest on a tie.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from reporting import emit

LOOP_REPEATS = 3
WORD = re.compile(r"\w+")


def four_grams(text: str) -> list[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return [tuple(words[i:i + 4]) for i in range(len(words) - 3)]


def repetition(answers: list[str]) -> tuple[float, float]:
    """(share of answers looping, mean share of repeated 4-grams) over the answers."""
    looping, repeated = 0, []
    for answer in answers:
        grams = four_grams(answer)
        counts = Counter(grams)
        looping += bool(counts) and max(counts.values()) >= LOOP_REPEATS
        repeated.append(1 - len(counts) / len(grams) if grams else 0.0)
    return looping / len(answers), statistics.mean(repeated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--penalties", default="1.0,1.1,1.2,1.3")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from ragtune.demo import demo_corpus_dir, demo_questions
    from ragtune.evaluation.metrics import token_f1
    from ragtune.project import Project
    from ragtune.rag import AnswerOptions

    rows = demo_questions(args.questions)
    penalties = [float(value) for value in args.penalties.split(",")]
    results = {"questions": len(rows), "max_tokens": args.max_tokens, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "project")
        project.ingest([str(demo_corpus_dir())])
        for strategy in ("base", "rag"):
            runtime = project.runtime(strategy)
            for penalty in penalties:
                options = AnswerOptions(max_new_tokens=args.max_tokens, repetition_penalty=penalty)
                answers = [runtime.answer(row["question"], options).answer for row in rows]
                looping, repeated = repetition(answers)
                results["rows"].append({
                    "strategy": strategy, "repetition_penalty": penalty, "looping_share": round(looping, 3),
                    "repeated_4gram_share": round(repeated, 4),
                    "f1": round(statistics.mean(token_f1(a, row["answer"]) for a, row in zip(answers, rows)), 4),
                    "mean_words": round(statistics.mean(len(a.split()) for a in answers), 1),
                    "example": answers[0][:300]})
        project.close()
    results["choice"] = choose(results["rows"], penalties)
    emit(results, args.out)


def choose(rows: list[dict], penalties: list[float]) -> float:
    by = {(row["strategy"], row["repetition_penalty"]): row for row in rows}
    strategies = ("base", "rag")
    keeping_f1 = [p for p in penalties if all(by[(s, p)]["f1"] >= by[(s, 1.0)]["f1"] - 0.01 for s in strategies)]
    return min(keeping_f1, key=lambda p: (sum(by[(s, p)]["looping_share"] for s in strategies), p))


if __name__ == "__main__":
    main()
