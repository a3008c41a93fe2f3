"""A strategy answering: the one runnable object `eval`/`compare` and the server share. What a strategy means
(which model answers, whether it retrieves, how many passages) is decided here, in `open_runtime`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationEngine, Message
from ragtune.rag import Answer, AnswerOptions, Finished, RagPipeline, TextDelta
from ragtune.strategies import Strategy, get_strategy

if TYPE_CHECKING:
    from ragtune.project import Project


@dataclass
class StrategyRuntime:
    """`strategy` answering with `model` (a registered name, a local path or a fine-tuning run directory) from
    `k` retrieved passages (0: closed book)."""

    strategy: Strategy
    model: str
    k: int
    pipeline: RagPipeline

    def answer(self, messages: str | list[Message], options: AnswerOptions | None = None, *,
               rank_depth: int = 0) -> Answer:
        """The whole answer (`rank_depth`: hits ranked for retrieval metrics, see RagPipeline.answer)."""
        return self.pipeline.answer(messages, self._options(options),
                                    rank_depth=rank_depth if self.strategy.uses_retrieval else 0)

    def stream(self, messages: str | list[Message], options: AnswerOptions | None = None
               ) -> Iterator[TextDelta | Finished]:
        """Text deltas as they are generated, then one `Finished` with citations, usage and timings."""
        return self.pipeline.stream(messages, self._options(options))

    def _options(self, options: AnswerOptions | None) -> AnswerOptions:
        options = options or AnswerOptions()
        if not self.strategy.uses_retrieval:
            if options.k:
                raise RagtuneError(f"strategy '{self.strategy.name}' answers closed book; k does not apply",
                                   "leave k out, or choose a strategy that retrieves (rag, ft+rag, raft)")
            return replace(options, k=0)
        if options.k is not None and options.k < 1:
            raise RagtuneError(f"strategy '{self.strategy.name}' retrieves passages but k is {options.k}",
                               "use k 1 or more")
        return replace(options, k=self.k if options.k is None else options.k)


def open_runtime(project: Project, strategy: str | Strategy, *, model: str | None = None, k: int | None = None,
                 generator: GenerationEngine | None = None) -> StrategyRuntime:
    """The runtime of `strategy` over `project`: its generator (the configured one unless `model` is given; a
    fine-tuned strategy needs its run), and for strategies that retrieve, `k` passages (default: the project's).
    `generator`: the engine for `model` when the caller already holds one (the server's model cache)."""
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if strategy.training_objective and model is None:
        raise RagtuneError(f"strategy '{strategy.name}' answers with a fine-tuned model",
                           f"pass --model RUN_DIR (a run of `ragtune finetune --objective "
                           f"{strategy.training_objective}`)")
    k = (k or project.config.retrieval.k) if strategy.uses_retrieval else 0
    if strategy.uses_retrieval and k < 1:
        raise RagtuneError(f"strategy '{strategy.name}' retrieves passages but k is {k}", "use --k 1 or more")
    model = model or project.config.models.generator
    return StrategyRuntime(strategy, model, k, project.pipeline(model, generator=generator))
