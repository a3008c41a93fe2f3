"""The one registry of evaluation metrics: what each is called, how it is computed, which way is better, whether it
is 0/1 per question, whether it needs retrieval, and which kinds of answers it can decide a comparison on.

The runner scores every answer with every metric that applies, statistics and advice read `binary` and
`higher_is_better` from here, the report and plots take labels from here, and the metric choice takes `fits`:
adding a metric is one entry in METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    higher_is_better: bool = True
    needs_retrieval: bool = False  # only strategies that retrieve have it
    fits: tuple[AnswerKind, ...] = ()  # answer kinds it can decide a comparison on (empty: never deciding)
    description: str = ""


def _per_answer(function: Callable[[str, str], float]) -> Scorer:
    """A scorer applying `function(answer, reference)` to every item."""
    return lambda items, embedder: [function(item.answer, item.reference) for item in items]


def _rouge(key: str) -> Scorer:
    return _per_answer(lambda answer, reference: m.rouge_scores(answer, reference)[key])


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
    Metric("exact_match", "exact match", _per_answer(m.exact_match), binary=True, fits=("choice", "short"),
           description="the answer equals the reference after SQuAD normalisation"),
    Metric("f1", "F1", _per_answer(m.token_f1), fits=("short", "long", "choice"),
           description="token F1 after SQuAD normalisation (lower case, no punctuation or articles)"),
    Metric("rouge1", "ROUGE-1", _rouge("rouge1")),
    Metric("rouge2", "ROUGE-2", _rouge("rouge2")),
    Metric("rougeL", "ROUGE-L", _rouge("rougeL"), fits=("long", "short", "code"),
           description="longest common subsequence of stemmed words"),
    Metric("bleu", "BLEU", _per_answer(m.sentence_bleu)),
    Metric("chrf", "chrF", _per_answer(m.chrf), fits=("code", "long"),
           description="character n-gram F-score (sacrebleu): sees identifiers, dots, brackets and arguments"),
    Metric("code_f1", "code-token F1", _per_answer(m.code_token_f1), fits=("code",),
           description="F1 over code tokens (identifiers, literals, operators), quotes normalised"),
    Metric("code_exact_match", "code exact match", _per_answer(m.code_exact_match), binary=True, fits=("code",),
           description="the same code tokens in order: whitespace, quote style and code fences ignored"),
    Metric("similarity", "similarity", _similarity, fits=("long", "short"),
           description="cosine similarity of answer and reference embeddings"),
    Metric("mc_accuracy", "multiple-choice accuracy", _mc_accuracy, binary=True, fits=("choice",),
           description="the choice with the highest log-likelihood is the answer"),
    Metric("recall_at_k", "recall@k", _retrieval(m.recall_at_k, True), binary=True, needs_retrieval=True),
    Metric("mrr", "MRR", _retrieval(m.reciprocal_rank, False), needs_retrieval=True),
    Metric("groundedness", "groundedness", _groundedness, needs_retrieval=True),
)}

# The metrics that can decide a comparison on each kind of answer, best first; the next one is used when a
# metric carries no information on a run.
DECIDING_ORDER: dict[AnswerKind, tuple[str, ...]] = {
    "choice": ("mc_accuracy", "exact_match", "f1"),
    "short": ("f1", "exact_match", "rougeL", "similarity"),
    "long": ("rougeL", "similarity", "f1", "chrf"),
    "code": ("chrf", "code_f1", "code_exact_match", "rougeL"),
}


def get_metric(name: str) -> Metric:
    """The metric called `name`, or an error listing the choices."""
    if name not in METRICS:
        raise RagtuneError(f"unknown metric '{name}'", f"choose among: {', '.join(METRICS)}")
    return METRICS[name]


def metric_label(name: str) -> str:
    """The display name of a metric ("f1" -> "F1")."""
    return METRICS[name].label if name in METRICS else name


def deciding_metrics() -> list[str]:
    """Metrics that can decide a comparison (every strategy has them)."""
    return [name for name, metric in METRICS.items() if metric.fits and not metric.needs_retrieval]


def score_items(items: list[ScoringItem], embedder) -> list[dict[str, float | None]]:
    """Every metric's score for every item (None where a metric does not apply)."""
    columns = {name: metric.score(items, embedder) for name, metric in METRICS.items()}
    return [{name: columns[name][index] for name in METRICS} for index in range(len(items))]
