"""The Python API: a project (workspace) with its knowledge base and models. The CLI is a thin layer over it."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ragtune.errors import RagtuneError
from ragtune.knowledge.ingest import IngestReport
from ragtune.knowledge.knowledge_base import KnowledgeBase
from ragtune.knowledge.retrieval import Mode, Retriever
from ragtune.knowledge.types import ChunkFilter, Hit
from ragtune.models.base import GenerationEngine
from ragtune.models.loading import load_generator
from ragtune.progress import ProgressReporter
from ragtune.rag import Answer, AnswerOptions, Finished, RagPipeline, condense_function
from ragtune.strategies import Strategy
from ragtune.strategy_runtime import StrategyRuntime, open_runtime
from ragtune.workspace import Workspace

if TYPE_CHECKING:
    from ragtune.data import DatasetSpec
    from ragtune.training.recipe import TrainingRecipe


class Project:
    """A ragtune project directory: `Project("my-kb").ingest(["docs/"])`, then `.search()` and `.ask()`."""

    def __init__(self, root: str | Path = ".", overrides: dict[str, Any] | None = None):
        self.workspace = Workspace.open(root, overrides)
        self.overrides = dict(overrides or {})
        self.config = self.workspace.config
        self.kb = KnowledgeBase(self.workspace)

    @cached_property
    def retriever(self) -> Retriever:
        return self.kb.retriever()

    def ingest(self, paths: list[str], *, prune: bool = False, text_field: str | None = None,
               sql: str | None = None, progress: ProgressReporter | None = None) -> IngestReport:
        """Ingest files, directories, JSON API URLs or a database URL with `sql`."""
        return self.kb.ingest(paths, prune=prune, json_text_field=text_field, sql_query=sql, progress=progress)

    def search(self, query: str, k: int | None = None, mode: Mode | None = None,
               source_glob: str | None = None, metadata: dict | None = None) -> list[Hit]:
        """Top-k chunks for a query, from sources matching `source_glob` and documents whose metadata holds
        `metadata`'s values, when given."""
        return self.retriever.search(query, k, mode, ChunkFilter(source_glob, metadata or {}))

    def search_batch(self, queries: list[str], k: int | None = None, mode: Mode | None = None,
                     source_glob: str | None = None, metadata: dict | None = None) -> list[list[Hit]]:
        """Top-k chunks for each of many queries, embedding them in batches."""
        return self.retriever.search_many(queries, k, mode, ChunkFilter(source_glob, metadata or {}))

    def pipeline(self, model: str | None = None, *, generator: GenerationEngine | None = None) -> RagPipeline:
        """A RAG pipeline over this knowledge base with the configured (or the named) generator; `generator`: that
        model's engine, already loaded."""
        generator = generator or load_generator(model or self.config.models.generator,
                                                context_tokens=self.config.generation.context_tokens)
        return RagPipeline(self.retriever, generator, self.config.generation,
                           condense_query=condense_function(self.config.retrieval.query_from))

    def runtime(self, strategy: str | Strategy = "rag", *, model: str | None = None, k: int | None = None,
                generator: GenerationEngine | None = None) -> StrategyRuntime:
        """`strategy` answering over this project (see ragtune.strategy_runtime.open_runtime)."""
        return open_runtime(self, strategy, model=model, k=k, generator=generator)

    def ask(self, question: str, k: int | None = None, model: str | None = None, source_glob: str | None = None,
            on_text: Callable[[str], None] | None = None, metadata: dict | None = None,
            repetition_penalty: float | None = None) -> Answer:
        """Answer with citations, decoded as the chat server does; `k=0` answers closed book with the same prompt
        otherwise; `on_text` receives the answer as it streams; `source_glob` and `metadata` filter the passages as
        in `search`; `repetition_penalty` None: the engine's chat default (models.base.chat_repetition_penalty)."""
        pipeline = self.pipeline(model)
        options = AnswerOptions(k=k, source_glob=source_glob, metadata=metadata, repetition_penalty=repetition_penalty,
                                chat=True)
        if on_text is None:
            return pipeline.answer(question, options)
        for event in pipeline.stream(question, options):
            if isinstance(event, Finished):
                return event.answer
            on_text(event.text)
        raise AssertionError("a stream ends with its Finished event")

    def finetune(self, train: list[DatasetSpec] | None, recipe: TrainingRecipe | None, *,
                 val: list[DatasetSpec] | None = None, out: Path | None = None, resume: bool = False,
                 console=None, callbacks=()):
        """Fine-tune with `recipe` (see ragtune.training.finetune); runs live under `.ragtune/runs/`."""
        from ragtune.training.finetune import finetune

        return finetune(train, recipe, runs_dir=self.workspace.runs_dir, val=val, out=out, resume=resume,
                        knowledge_base_factory=lambda: self.kb, console=console, callbacks=callbacks)

    def require_documents(self, closed_book_hint: str = "") -> None:
        """Refuse to retrieve from a knowledge base that holds nothing: answers would silently be closed book."""
        if not self.kb.store.has_chunks():
            root = self.workspace.root
            raise RagtuneError(f"the knowledge base of {root} holds no documents yet",
                               f"ingest some first: ragtune ingest DOCS --project {root}{closed_book_hint}")

    def status(self) -> dict:
        return self.kb.status()

    def close(self) -> None:
        self.kb.close()
