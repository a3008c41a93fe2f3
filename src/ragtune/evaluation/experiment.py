"""An experiment: which documents, questions, strategies, model and budgets `ragtune compare` uses.

Built-in defaults < the experiment YAML file < command-line flags.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragtune.config import read_yaml_mapping, validation_problems
from ragtune.errors import RagtuneError
from ragtune.evaluation.registry import deciding_metrics
from ragtune.evaluation.results import KnowledgeChanges
from ragtune.strategies import STRATEGIES

DEFAULT_STRATEGIES = ["base", "rag", "ft", "ft+rag", "raft"]


class Budget(BaseModel):
    """Training budget of each fine-tuning run and the decoding budget of every answer."""

    model_config = ConfigDict(extra="forbid")

    sft_max_steps: int = Field(60, ge=1, description="Optimizer steps of the supervised run (ft, ft+rag).")
    cpt_max_steps: int = Field(30, ge=1, description="Optimizer steps of continued pre-training (ft-docs).")
    raft_max_steps: int = Field(40, ge=1, description="Optimizer steps of the RAFT run.")
    batch_size: int = Field(8, ge=1)
    max_seq_length: int = Field(768, ge=64)
    max_new_tokens: int = Field(48, ge=1, description="Answer length limit, the same for every strategy.")
    max_test_questions: int | None = Field(None, ge=1, description="Evaluate on at most this many questions.")


# Settings that change how the answers are judged, not the answers: re-running with other values reuses them.
ANALYSIS_SETTINGS = ("primary_metric", "price_per_hour", "latency_p95_s", "budget_per_1000", "knowledge_changes",
                     "must_cite")
STAGES_VERSION = 2  # the format of the stored stages (2: every metric scored per question)

QUICK_BUDGET = Budget(sft_max_steps=8, cpt_max_steps=4, raft_max_steps=4, batch_size=4, max_seq_length=512,
                      max_new_tokens=24, max_test_questions=8)


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docs: str = Field(description="Documents: a file or directory to ingest.")
    train: str | None = Field(None, description="Q&A JSONL the fine-tuned strategies learn from; none: a question "
                                                "set is synthesized from the documents (`ragtune data synthesize`).")
    synthesize: int | None = Field(None, ge=10, description="Questions to synthesize from the documents: the whole "
                                                             "set when no `train` is given (default 150, 60 with "
                                                             "quick); with `train`, added to its training questions "
                                                             "and evaluated apart from its test questions.")
    test: str | None = Field(None, description="Held-out Q&A JSONL; default: a seeded split of `train`.")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    strategies: list[str] = DEFAULT_STRATEGIES
    model: str = "smollm2-135m"
    method: str = "lora"
    k: int = Field(3, ge=1, description="Passages retrieved by the strategies that use retrieval.")
    raft_k: int = Field(3, ge=1, description="Passages per RAFT training row.")
    seed: int = 0
    quick: bool = False
    budget: Budget = Budget()
    learning_rate: float | None = Field(None, gt=0, description="Fine-tuning learning rate (default per method).")
    primary_metric: str | None = Field(None, description="The metric that decides (default: chosen from the "
                                                         "test set's answers).")
    price_per_hour: float = Field(0.0, ge=0, description="What an hour of this machine costs (any currency).")
    latency_p95_s: float | None = Field(None, gt=0, description="Constraint: 95th-percentile answer latency.")
    budget_per_1000: float | None = Field(None, ge=0, description="Constraint: cost per 1,000 questions.")
    knowledge_changes: KnowledgeChanges = "monthly"
    must_cite: bool = False
    update_split: float | None = Field(None, gt=0, lt=1, description="Share of documents held back to measure "
                                                                      "how each strategy absorbs new knowledge.")

    def synthetic_questions(self) -> int:
        """How many questions to synthesize (asked for, or the default when `train` is not given)."""
        return self.synthesize or (60 if self.quick else 150)

    def adds_synthetic(self) -> bool:
        """Whether synthetic questions are added to a human set (their test questions then scored apart)."""
        return self.train is not None and self.synthesize is not None

    def effective_budget(self) -> Budget:
        return QUICK_BUDGET if self.quick else self.budget

    def fingerprint(self) -> str:
        """Identifies the settings finished stages were computed with (resume refuses a changed experiment); the
        settings that only analyse the answers (ANALYSIS_SETTINGS) are left out, so changing them reuses every
        stored answer."""
        measured = self.model_dump(exclude=set(ANALYSIS_SETTINGS))
        return hashlib.sha256(json.dumps({"stages": STAGES_VERSION, **measured}, sort_keys=True).encode()
                              ).hexdigest()[:16]


def load_experiment(path: Path | None, overrides: dict[str, Any]) -> Experiment:
    """The experiment from `path` (YAML, optional) with `overrides` (None values ignored) on top."""
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise RagtuneError(f"experiment file not found: {path}", "pass an existing YAML file")
        data = read_yaml_mapping(path, mapping_hint="e.g. `docs: documents/` and `train: questions.jsonl`")
    data.update({key: value for key, value in overrides.items() if value is not None})
    if "docs" not in data:
        raise RagtuneError("an experiment needs documents",
                           "pass --docs PATH (or put docs: in the experiment file); --train FILE is optional")
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise RagtuneError(f"invalid experiment: {validation_problems(exc)}", "correct the named settings") from exc
    if experiment.budget_per_1000 is not None and experiment.price_per_hour == 0:
        raise RagtuneError("a budget per 1,000 questions needs a price per machine hour to compare costs with",
                           "pass --price-per-hour (or put price_per_hour: in the experiment file)")
    check_names(experiment.strategies, experiment.method, experiment.primary_metric)
    return experiment


def check_names(strategies: list[str], method: str | None, metric: str | None) -> None:
    """Refuse unknown strategy, method and metric names before any work starts, listing the valid ones."""
    from ragtune.training.recipe import METHODS

    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown:
        raise RagtuneError(f"unknown strategies: {', '.join(unknown)}", f"choose among: {', '.join(STRATEGIES)}")
    if method is not None and method not in METHODS:
        raise RagtuneError(f"unknown method: {method}", f"choose among: {', '.join(METHODS)}")
    if metric is not None and metric not in deciding_metrics():
        raise RagtuneError(f"unknown deciding metric: {metric}", f"choose among: {', '.join(deciding_metrics())}")
