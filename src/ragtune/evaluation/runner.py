"""Run one strategy on a test set: answer every question with the same prompts and decoding as `ragtune ask`,
score each answer, and aggregate the scores with bootstrap confidence intervals, latency and token usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ragtune.evaluation.metrics import passage_contains_answer
from ragtune.evaluation.registry import METRICS, ScoringItem, score_items
from ragtune.evaluation.statistics import bootstrap_ci
from ragtune.evaluation.test_set import TestQuestion
from ragtune.knowledge.types import Hit
from ragtune.progress import ProgressReporter, SilentProgress
from ragtune.prompts import build_messages
from ragtune.strategies import Strategy
from ragtune.strategy_runtime import StrategyRuntime

RANKING_DEPTH = 10  # hits ranked for recall@k and MRR (one retrieval per question; the prompt takes the first k)


@dataclass
class EvaluationResult:
    strategy: str
    model: str
    k: int
    metrics: dict[str, dict[str, float]]  # name → {"value", "ci_low", "ci_high"}
    latency: dict[str, float | list[float]]
    usage: dict[str, float]
    per_question: list[dict]  # id, question, reference, choices, answer, passages, timings, scores{metric: value}

    @property
    def n(self) -> int:
        return len(self.per_question)

    def to_dict(self) -> dict:
        return {"n": self.n, **asdict(self)}


def evaluate(project, questions: list[TestQuestion], strategy: Strategy, *, model: str | None = None,
             k: int | None = None, seed: int = 0, progress: ProgressReporter | None = None) -> EvaluationResult:
    """Answer and score `questions` with `strategy`; `model` is the generator (a fine-tuned run directory for
    the fine-tuned strategies), `k` the passages retrieved for strategies that use retrieval. Every metric of the
    registry that applies is scored, so any of them can decide the comparison later without answering again."""
    runtime = project.runtime(strategy, model=model, k=k)
    task = (progress or SilentProgress()).task(f"evaluating {strategy.name}", total=len(questions))
    rows, items = [], []
    for question in questions:
        row, item = _answer(runtime, question)
        rows.append(row)
        items.append(item)
        task.advance()
    for row, scores in zip(rows, score_items(items, project.kb.embedder)):
        row["scores"] = scores
    return EvaluationResult(strategy.name, runtime.model, runtime.k, _aggregate(rows, seed), _latency(rows),
                            _usage(rows), rows)


def _answer(runtime: StrategyRuntime, question: TestQuestion) -> tuple[dict, ScoringItem]:
    """One answer, with what the report keeps of it and what scoring needs."""
    answer = runtime.answer(question.question, rank_depth=RANKING_DEPTH)
    text = answer.answer
    row = {"id": question.id, "question": question.question, "reference": question.reference,
           "choices": question.choices, "answer": text,
           "passages": [{"source": hit.source, "text": hit.text} for hit in answer.passages],
           "latency_s": answer.timings["total_s"], "generation_s": answer.timings["generation_s"],
           "prompt_tokens": answer.timings["prompt_tokens"], "completion_tokens": answer.timings["completion_tokens"]}
    choice_logprobs = None
    if question.choices:
        messages = build_messages(question.question, answer.passages)
        choice_logprobs = runtime.pipeline.generator.score_continuations(messages, question.choices)
    gold_ranks = [_is_gold(hit, question) for hit in answer.ranked] if runtime.strategy.uses_retrieval else None
    return row, ScoringItem(text, question.reference, [hit.text for hit in answer.passages], gold_ranks, runtime.k,
                            question.choices, choice_logprobs)


def _is_gold(hit: Hit, question: TestQuestion) -> bool:
    """A hit from the gold document when the question names one, else a hit containing the reference answer."""
    if question.gold_source:
        return hit.source == question.gold_source or hit.source.endswith("/" + question.gold_source)
    return passage_contains_answer(hit.text, question.reference)


def _aggregate(rows: list[dict], seed: int) -> dict[str, dict[str, float]]:
    """Mean and 95% bootstrap interval of every metric present in the rows' scores (over the rows where it
    applies)."""
    metrics = {}
    for name in METRICS:
        values = [row["scores"][name] for row in rows if row["scores"].get(name) is not None]
        if values:
            low, high = bootstrap_ci(values, seed=seed)
            metrics[name] = {"value": float(np.mean(values)), "ci_low": low, "ci_high": high}
    return metrics


def _latency(rows: list[dict]) -> dict:
    seconds = [row["latency_s"] for row in rows]
    generation = sum(row["generation_s"] for row in rows)
    return {"p50_s": float(np.percentile(seconds, 50)), "p95_s": float(np.percentile(seconds, 95)),
            "mean_s": float(np.mean(seconds)),
            "tokens_per_second": sum(row["completion_tokens"] for row in rows) / generation if generation else 0.0,
            "samples_s": seconds}


def _usage(rows: list[dict]) -> dict:
    return {"prompt_tokens_per_question": float(np.mean([row["prompt_tokens"] for row in rows])),
            "completion_tokens_per_question": float(np.mean([row["completion_tokens"] for row in rows]))}
