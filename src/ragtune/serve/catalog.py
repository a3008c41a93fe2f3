"""What a server offers: one model id per servable strategy (over the base model or a fine-tuning run), the alias
`ragtune` for the recommended one, and the loaded engines in a bounded LRU cache."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationEngine
from ragtune.models.loading import open_generator
from ragtune.strategies import STRATEGIES, Strategy
from ragtune.strategy_runtime import StrategyRuntime
from ragtune.training import runs

ALIAS = "ragtune"


class UnknownModel(RagtuneError):
    """A request named a model this server does not offer."""


@dataclass(frozen=True)
class ServedModel:
    """One servable strategy: `strategy` over `run` (a fine-tuning run directory) or over the base model."""

    id: str
    strategy: Strategy
    base_model: str
    run: Path | None = None
    quality: dict | None = None  # {"metric", "value", "ci_low", "ci_high", "n"} measured by a comparison
    recommended: bool = False

    @property
    def generator(self) -> str:
        return str(self.run) if self.run else self.base_model

    def describe(self, created: int) -> dict:
        """The OpenAI model object, with what ragtune knows about it."""
        return {"id": self.id, "object": "model", "created": created, "owned_by": "ragtune",
                "strategy": self.strategy.name, "description": self.strategy.description,
                "base_model": self.base_model, "run": self.run.name if self.run else None,
                "retrieves": self.strategy.uses_retrieval, "quality": self.quality, "recommended": self.recommended}


def discover_models(base_model: str, run_dirs: list[Path], comparison: dict | None = None) -> list[ServedModel]:
    """`base` and `rag` over `base_model`, and every strategy each finished run serves (its training objective
    decides which); ids are `STRATEGY`, or `STRATEGY:RUN` where several runs serve the same strategy. With a
    comparison's results, the models it measured carry their quality and its recommendation is marked."""
    finished = [(run, runs.read_metadata(run)) for run in sorted(run_dirs) if runs.is_finished_run(run)]
    entries: list[tuple[Strategy, Path | None]] = [(STRATEGIES["base"], None), (STRATEGIES["rag"], None)]
    for strategy in STRATEGIES.values():
        entries += [(strategy, run) for run, metadata in finished
                    if strategy.training_objective and metadata.get("objective") == strategy.training_objective]
    per_strategy = {strategy.name: sum(1 for s, _ in entries if s == strategy) for strategy, _ in entries}
    measured = _measured(comparison)
    recommended = (comparison or {}).get("recommendation", {}).get("strategy")
    models = []
    for strategy, run in entries:
        model_id = strategy.name if per_strategy[strategy.name] == 1 else f"{strategy.name}:{run.name}"
        quality = measured.get((strategy.name, run.name if run else base_model))
        models.append(ServedModel(model_id, strategy, base_model, run, quality,
                                  recommended=quality is not None and strategy.name == recommended))
    return models


def _measured(comparison: dict | None) -> dict[tuple[str, str], dict]:
    """(strategy, run directory name or base model) → its quality on the comparison's deciding metric (runs are
    matched by name, so a comparison folder that was moved or copied still matches)."""
    if not comparison:
        return {}
    metric = comparison["metric_choice"]["metric"]
    return {(name, Path(entry["model"]).name if STRATEGIES[name].training_objective else entry["model"]):
            {"metric": metric, "n": comparison["test_set"]["n"], **entry["metrics"][metric]}
            for name, entry in comparison["strategies"].items() if metric in entry.get("metrics", {})}


def read_comparison(directory: Path) -> dict:
    """The results.json a `ragtune compare --out DIRECTORY` wrote."""
    path = directory / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RagtuneError(f"{path} does not exist", f"run `ragtune compare --out {directory}` (or `ragtune demo`) "
                           "first, or point --from-compare at the directory it wrote") from None
    except json.JSONDecodeError as error:
        raise RagtuneError(f"{path} is not valid JSON ({error})", "run the comparison again") from None


class EngineBusy(RagtuneError):
    """More requests wait for one model than the server queues."""


class EngineSlot:
    """One loaded engine's turn-taking: requests wait here (in the event loop, holding no thread) and decode one at
    a time, since one llama.cpp context serves one request; beyond `max_waiting` waiting requests, EngineBusy."""

    def __init__(self, engine: GenerationEngine, max_waiting: int):
        self.engine, self.max_waiting = engine, max_waiting
        self.waiting = 0
        self._lock = asyncio.Lock()

    def check_room(self) -> None:
        """EngineBusy when the queue for this engine is full."""
        if self.waiting >= self.max_waiting:
            raise EngineBusy(f"{self.waiting} requests are already waiting for this model",
                             "retry in a moment, or run more server replicas")

    @asynccontextmanager
    async def turn(self):
        self.check_room()
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._lock.release()


class ModelCatalog:
    """The served models and their runtimes. Engines are loaded on first use (each once, while other models keep serving) and the catalog keeps
    at most `max_loaded` of them, least recently used out first (a project with many runs must not load them all;
    an evicted engine lives on only until its in-flight requests finish). `open_engine(generator,
    context_tokens=...)` loads one."""

    def __init__(self, project, models: list[ServedModel], *, max_loaded: int = 2, max_waiting: int = 64,
                 open_engine: Callable[..., GenerationEngine] = open_generator):
        self.project, self.models, self.max_loaded = project, {m.id: m for m in models}, max_loaded
        self.max_waiting, self.open_engine = max_waiting, open_engine
        recommended = [m for m in models if m.recommended]
        self.default = recommended[0] if recommended else self.models["rag"]
        self._slots: OrderedDict[str, EngineSlot] = OrderedDict()
        self._guard = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # generator → held while it loads

    def get(self, model_id: str) -> ServedModel:
        """The model called `model_id` (or the recommended one for the alias), else UnknownModel naming them."""
        if model_id == ALIAS:
            return self.default
        if model_id not in self.models:
            raise UnknownModel(f"the model '{model_id}' does not exist",
                               f"choose among: {', '.join([ALIAS, *self.models])}")
        return self.models[model_id]

    def runtime(self, model: ServedModel) -> tuple[StrategyRuntime, EngineSlot]:
        """`model`'s runtime and the slot whose turn it must hold while it generates."""
        slot = self._slot(model.generator)
        return self.project.runtime(model.strategy, model=model.generator, generator=slot.engine), slot

    def loaded(self) -> list[str]:
        with self._guard:
            return list(self._slots)

    def _slot(self, generator: str) -> EngineSlot:
        """The loaded slot for `generator`, loading it if needed. A load holds only that generator's loading lock,
        so requests for models already loaded go on meanwhile; the LRU limit counts loads in progress."""
        with self._guard:
            if generator in self._slots:
                self._slots.move_to_end(generator)
                return self._slots[generator]
            loading = self._loading.setdefault(generator, threading.Lock())
        with loading:
            with self._guard:
                if generator in self._slots:  # another request loaded it while this one waited
                    self._slots.move_to_end(generator)
                    return self._slots[generator]
                while self._slots and len(self._slots) + len(self._loading) > self.max_loaded:
                    self._slots.popitem(last=False)  # freed once its in-flight requests finish
            try:
                engine = self.open_engine(generator, context_tokens=self.project.config.generation.context_tokens)
            except BaseException:
                with self._guard:
                    self._loading.pop(generator, None)
                raise
            with self._guard:  # loaded and no longer loading in one step: no second load can slip in between
                self._loading.pop(generator, None)
                slot = self._slots[generator] = EngineSlot(engine, self.max_waiting)
                return slot
