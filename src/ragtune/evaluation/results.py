"""The typed, versioned results of a comparison (results.json): written and read only through these models, so
advice, report, plots and the CLI share one validated structure. Reasons cite their evidence as paths into it
("strategies.rag.metrics.f1", "significance[3]"), which `resolve` follows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragtune.atomic_files import write_bytes_atomically
from ragtune.config import validation_problems
from ragtune.errors import RagtuneError

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
KnowledgeChanges = Literal["never", "monthly", "weekly", "daily"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    """A mean with its 95% bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float


class Latency(_Model):
    p50_s: float
    p95_s: float
    mean_s: float
    tokens_per_second: float
    samples_s: list[float] = []


class Cost(_Model):
    train_seconds: float | None = None
    train_peak_memory_gb: float | None = None
    trainable_parameters: int | None = None
    adapter_mb: float | None = None
    index_seconds: float | None = None
    index_mb: float | None = None
    prompt_tokens_per_question: float
    completion_tokens_per_question: float
    machine_seconds_per_1000_questions: float
    cost_per_1000_questions: float
    training_cost: float | None = None


class CurvePoint(_Model):
    step: int
    loss: float | None = None
    eval_loss: float | None = None


class StrategyResult(_Model):
    description: str
    model: str
    uses_retrieval: bool
    k: int
    metrics: dict[str, Interval]
    cost: Cost
    latency: Latency
    training_curve: list[CurvePoint] = []
    # on the synthetic test questions added to a human set: reported, never deciding
    synthetic_metrics: dict[str, Interval] = {}


class PairedTest(_Model):
    """A paired comparison a − b on one metric over the questions both answered."""

    a: str
    b: str
    metric: str
    n: int
    mean_difference: float
    sd_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    test: str
    significant: bool
    mcnemar_p_value: float | None = None


class Passage(_Model):
    source: str
    text: str


class StrategyAnswer(_Model):
    answer: str
    passages: list[Passage] = []
    latency_s: float
    scores: dict[str, float | None]


class QuestionRow(_Model):
    id: str
    question: str
    reference: str
    choices: list[str] | None = None
    answers: dict[str, StrategyAnswer]


class UpdateEntry(_Model):
    """How one strategy absorbed the new documents; metric means on the new and the old questions."""

    absorb_seconds: float
    absorb_peak_memory_gb: float | None = None
    how: str
    new: dict[str, float]
    old_before: dict[str, float]
    old_after: dict[str, float]

    def forgetting(self, metric: str) -> float | None:
        """How much the metric dropped on the old questions (None when it was not measured both times)."""
        if metric in self.old_before and metric in self.old_after:
            return self.old_before[metric] - self.old_after[metric]
        return None


class KnowledgeUpdate(_Model):
    new_documents: int
    new_questions: int
    old_questions: int
    strategies: dict[str, UpdateEntry]


class Constraints(_Model):
    """What the deployment needs: a p95 latency target (s), a budget per 1,000 questions (money), how often the
    knowledge changes, and whether answers must cite retrieved sources."""

    latency_p95_s: float | None = Field(None, gt=0)
    budget_per_1000: float | None = Field(None, ge=0)
    knowledge_changes: KnowledgeChanges = "monthly"
    must_cite: bool = False


class RunConfig(_Model):
    model: str
    method: str
    k: int
    docs: str
    train: str
    test: str
    price_per_hour: float
    quick: bool
    budget: dict[str, Any] = {}
    runs: dict[str, str] = {}


class SkippedMetric(_Model):
    metric: str
    reason: str


class MetricChoice(_Model):
    """The metric that decides the comparison and why; `metric` is None when no fitting one is informative."""

    metric: str | None
    answer_kind: str
    answer_kinds: dict[str, int] = {}  # how many test answers are multiple choice, code and prose
    reason: str
    requested: str | None = None
    candidates: list[str]
    skipped: list[SkippedMetric] = []


class TestSetInfo(_Model):
    n: int
    train_questions: int | None = None
    # when questions were synthesized: model, planned, kept, pass_rate, report; with "added": True they were added
    # to a human set (train_questions of them in training, test_questions scored apart)
    synthetic: dict | None = None


class HumanRating(_Model):
    """A strategy's Bradley-Terry rating from blind votes (Elo-like scale), with its 95% bootstrap interval."""

    strategy: str
    score: float
    ci_low: float
    ci_high: float
    battles: int


class HumanEvaluation(_Model):
    """The arena's leaderboard for the compared strategies (ragtune.arena.ratings.Leaderboard.to_dict())."""

    votes: int
    ratings: list[HumanRating]  # best first
    win_rates: dict[str, dict[str, float | None]]
    counts: dict[str, dict[str, int]]
    position_bias: dict
    agreement: dict
    stopping_hint: str

    def rating(self, strategy: str) -> HumanRating | None:
        return next((rating for rating in self.ratings if rating.strategy == strategy), None)


class Reason(_Model):
    text: str
    evidence: list[str] = []


class Recommendation(_Model):
    """The verdict: a strategy, or "inconclusive" with what would decide it."""

    verdict: Literal["recommended", "inconclusive"]
    strategy: str | None
    headline: str
    reasons: list[Reason]
    excluded: dict[str, str] = {}
    what_would_decide: list[Reason] = []
    detectable_difference: float | None = None


class Results(_Model):
    schema_version: int
    created: str
    seed: int
    config: RunConfig
    constraints: Constraints = Constraints()
    metric_choice: MetricChoice | None = None
    test_set: TestSetInfo
    strategies: dict[str, StrategyResult]
    significance: list[PairedTest] = []
    per_question: list[QuestionRow] = []
    knowledge_update: KnowledgeUpdate | None = None
    human_evaluation: HumanEvaluation | None = None  # once people have voted in the arena
    recommendation: Recommendation | None = None
    resumed_stages: list[str] = []

    @field_validator("schema_version")
    @classmethod
    def _supported(cls, version: int) -> int:
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema version {version} is not the supported {SCHEMA_VERSION}")
        return version

    @property
    def deciding_metric(self) -> str | None:
        """The deciding metric (None when no metric could decide)."""
        return self.metric_choice.metric if self.metric_choice else None

    def per_question_scores(self, metric: str) -> dict[str, list[float | None]]:
        """Each strategy's per-question scores on `metric`, in question order."""
        return {name: [row.answers[name].scores.get(metric) if name in row.answers else None
                       for row in self.per_question] for name in self.strategies}

    def is_priced(self) -> bool:
        """Whether the comparison had a price per machine hour (otherwise costs are in machine time)."""
        return self.config.price_per_hour > 0

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, out_dir: Path) -> Path:
        return write_bytes_atomically(Path(out_dir) / RESULTS_FILE, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Results:
        """Read and validate results.json (a directory holding it is accepted), with a clear error if it is not."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULTS_FILE
        if not path.is_file():
            raise RagtuneError(f"no comparison results at {path}", "pass the --out directory of a finished "
                                                                     "`ragtune compare`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RagtuneError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})",
                               "rerun `ragtune compare --resume` to write it again") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RagtuneError(f"{path}: not valid ragtune results (schema {SCHEMA_VERSION}): "
                               f"{validation_problems(exc)}",
                               "results of another ragtune version: rerun the same `ragtune compare` with --resume (it "
                               "reuses the stored answers when their format still fits), or into a new --out") from exc


def resolve(data, path: str):
    """The value at an evidence path such as "strategies.rag.metrics.f1" or "significance[3]" (KeyError, IndexError
    or AttributeError when the path does not exist)."""
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            data = data[int(index)]
        elif isinstance(data, dict):
            data = data[key]
        else:
            if key not in type(data).model_fields:
                raise AttributeError(f"{type(data).__name__} has no field {key!r} (path {path})")
            data = getattr(data, key)
    return data
