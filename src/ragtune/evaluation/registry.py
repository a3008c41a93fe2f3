"""The one registry of evaluation metrics: what each is called, how it is computed, whether it is 0/1 per question,
whether it needs retrieval, and which kinds of answers it can decide a comparison on, in which order.

Every metric is a score in 0..1 where higher is better. The runner scores every answer with every metric that
applies, statistics read `binary` from here, the report and plots take labels from here, and the metric choice
takes `fits`: adding a metric is one entry in METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Literal

from ragtune.errors import RagtuneError
from ragtune.evaluation import metrics as m

AnswerKind = Literal["choice", "short", "long", "code"]
ANSWER_KINDS: tuple[AnswerKind, ...] = ("choice", "short", "long", "code")


@dataclass(frozen=True)
class ScoringItem:
    """What scoring one answer needs: the answer and reference, the passages it was given, whether each ranked hit
    (to the ranking depth) is from the gold document, the passages' count k, and multiple-choice scores."""

    answer: str
    reference: str
    passages: list[str] = field(default_factory=list)
    gold_ranks: list[bool] | None = None  # None when the strategy does not retrieve
    k: int = 0
    choices: list[str] | None = None
    choice_logprobs: list[float] | None = None


Scorer = Callable[[list[ScoringItem], object], list[float | None]]  # (items, embedder) -> one score per item


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    score: Scorer
    binary: bool = False  # 0/1 per question: McNemar applies
    needs_retrieval: bool = False  # only strategies that retrieve have it
    fits: dict[AnswerKind, int] = field(default_factory=dict)  # answer kind → its rank there (1 decides first)
    description: str = ""


def _per_answer(function: Callable[[str, str], float]) -> Scorer:
    """A scorer applying `function(answer, reference)` to every item."""
    return lambda items, embedder: [function(item.answer, item.reference) for item in items]


@lru_cache(maxsize=1024)
def _rouge_scores(answer: str, reference: str) -> dict[str, float]:
    """ROUGE-1, -2 and -L come from one scoring; the three metrics of an answer share it instead of redoing it."""
    return m.rouge_scores(answer, reference)


def _rouge(key: str) -> Scorer:
    return _per_answer(lambda answer, reference: _rouge_scores(answer, reference)[key])


def _similarity(items: list[ScoringItem], embedder) -> list[float | None]:
    return m.embedding_similarity([item.answer for item in items], [item.reference for item in items], embedder)


def _mc_accuracy(items: list[ScoringItem], embedder) -> list[float | None]:
    return [float(m.multiple_choice_correct(item.choice_logprobs, item.choices, item.reference))
            if item.choices and item.choice_logprobs is not None else None for item in items]


def _retrieval(function: Callable[[list[str], set[str], int], float], depth_from_k: bool) -> Scorer:
    def score(items: list[ScoringItem], embedder) -> list[float | None]:
        scores = []
        for item in items:
            if item.gold_ranks is None:
                scores.append(None)
                continue
            keys = ["gold" if gold else f"other-{i}" for i, gold in enumerate(item.gold_ranks)]
            scores.append(function(keys, {"gold"}, item.k if depth_from_k else max(len(keys), 1)))
        return scores
    return score


def _groundedness(items: list[ScoringItem], embedder) -> list[float | None]:
    return [m.groundedness(item.answer, item.passages) if item.gold_ranks is not None else None for item in items]


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("exact_match", "exact match", _per_answer(m.exact_match), binary=True, fits={"short": 2, "choice": 2},
           description="the answer equals the reference after SQuAD normalisation"),
    Metric("f1", "F1", _per_answer(m.token_f1), fits={"short": 1, "long": 3, "choice": 3},
           description="token F1 after SQuAD normalisation (lower case, no punctuation or articles)"),
    Metric("rouge1", "ROUGE-1", _rouge("rouge1")),
    Metric("rouge2", "ROUGE-2", _rouge("rouge2")),
    Metric("rougeL", "ROUGE-L", _rouge("rougeL"), fits={"long": 1, "short": 3, "code": 4},
           description="longest common subsequence of stemmed words"),
    Metric("bleu", "BLEU", _per_answer(m.sentence_bleu)),
    Metric("chrf", "chrF", _per_answer(m.chrf), fits={"code": 1, "long": 4},
           description="character n-gram F-score (sacrebleu): sees identifiers, dots, brackets and arguments"),
    Metric("code_f1", "code-token F1", _per_answer(m.code_token_f1), fits={"code": 2},
           description="F1 over code tokens (identifiers, literals, operators), quotes normalised"),
    Metric("code_exact_match", "code exact match", _per_answer(m.code_exact_match), binary=True, fits={"code": 3},
           description="the same code tokens in order: whitespace, quote style and code fences ignored"),
    Metric("similarity", "similarity", _similarity, fits={"long": 2, "short": 4},
           description="cosine similarity of answer and reference embeddings"),
    Metric("mc_accuracy", "multiple-choice accuracy", _mc_accuracy, binary=True, fits={"choice": 1},
           description="the choice with the highest log-likelihood is the answer"),
    Metric("recall_at_k", "recall@k", _retrieval(m.recall_at_k, True), binary=True, needs_retrieval=True),
    Metric("mrr", "MRR", _retrieval(m.reciprocal_rank, False), needs_retrieval=True),
    Metric("groundedness", "groundedness", _groundedness, needs_retrieval=True),
)}


def deciding_order(kind: AnswerKind) -> list[str]:
    """The metrics that can decide a comparison on answers of `kind`, best first; the next one is used when a
    metric carries no information on a run."""
    fitting = [metric for metric in METRICS.values() if kind in metric.fits and not metric.needs_retrieval]
    return [metric.name for metric in sorted(fitting, key=lambda metric: metric.fits[kind])]


def get_metric(name: str) -> Metric:
    """The metric called `name`, or an error listing the choices."""
    if name not in METRICS:
        raise RagtuneError(f"unknown metric '{name}'", f"choose among: {', '.join(METRICS)}")
    return METRICS[name]


def metric_label(name: str) -> str:
    """The display name of a metric ("f1" -> "F1")."""
    return METRICS[name].label if name in METRICS else name


def deciding_metrics() -> list[str]:
    """Metrics that may decide a comparison: they fit some kind of answer and need no retrieval, so closed-book
    strategies have them too (multiple-choice accuracy only on rows with choices)."""
    return [name for name, metric in METRICS.items() if metric.fits and not metric.needs_retrieval]


def score_items(items: list[ScoringItem], embedder) -> list[dict[str, float | None]]:
    """Every metric's score for every item (None where a metric does not apply)."""
    columns = {name: metric.score(items, embedder) for name, metric in METRICS.items()}
    return [{name: columns[name][index] for name in METRICS} for index in range(len(items))]
