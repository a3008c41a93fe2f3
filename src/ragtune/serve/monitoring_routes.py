"""The monitoring API: the project's health report (`ragtune health`) at GET /v1/monitoring, cached for a while
since a run reads the whole knowledge base and may load the embedder."""

from __future__ import annotations

import asyncio
import math
import time

import anyio
import numpy as np
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ragtune.errors import RagtuneError
from ragtune.health.report import check_health
from ragtune.process_memory import release_freed_memory
from ragtune.project import Project

CACHE_SECONDS = 30.0  # a report younger than this is answered again rather than measured again


def monitoring_router(state, api_error) -> APIRouter:
    """GET /monitoring over `state.project`: the report of `check_health`, at most CACHE_SECONDS old unless
    `?refresh=true`. One check runs at a time, in a worker thread, on its own opening of the project (it reads the
    probe set's recall history but records none: `ragtune health` does); requests that arrive while it runs wait for
    it in the event loop, holding no thread, and get its result."""
    router = APIRouter()
    running = asyncio.Lock()
    cache: dict = {"report": None, "at": -math.inf}  # `at`: time.monotonic() when the cached report was finished

    def young() -> bool:
        return cache["report"] is not None and time.monotonic() - cache["at"] < CACHE_SECONDS

    def measure() -> dict:
        # A project of its own (store connection, indexes): searches go on while it runs. It borrows the served
        # embedder a batch at a time under the retriever's lock, and the served indexes are brought up to date
        # first, so the check only reads the index files.
        served = state.project
        with served.retriever.lock:
            served.kb.sync_indexes()
        project = Project(served.workspace.root, served.overrides)
        project.kb.embedder = SharedEmbedder(served.kb.embedder, served.retriever.lock)
        try:
            return _plain(check_health(project, record_probe=False).to_dict())
        finally:
            project.close()
            release_freed_memory()

    @router.get("/monitoring")
    async def monitoring(refresh: bool = False) -> dict:
        asked = time.monotonic()
        if not refresh and young():
            return cache["report"]
        async with running:
            # A check finished while this request waited: it is as fresh as one run now.
            if cache["at"] >= asked or (not refresh and young()):
                return cache["report"]
            try:
                with anyio.CancelScope(shield=True):  # a client that leaves never lets a second check start
                    report = await run_in_threadpool(measure)
            except RagtuneError as error:
                message = str(error).replace("\n  hint:", ";")
                raise api_error(500, f"the health check failed: {message}", "health_check_failed",
                                "server_error") from None
            cache.update(report=report, at=time.monotonic())
            return report

    return router


class SharedEmbedder:
    """The served embedder lent to a health check: it encodes `BATCH` texts at a time under the server's lock, so
    searches interleave with the check's embedding instead of waiting for all of it."""

    BATCH = 64

    def __init__(self, embedder, lock):
        self.embedder, self.lock = embedder, lock

    def encode(self, texts: list[str]) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), self.BATCH):
            with self.lock:
                parts.append(self.embedder.encode(texts[start:start + self.BATCH]))
        return np.concatenate(parts) if parts else self.embedder.encode([])

    def __getattr__(self, name):
        return getattr(self.embedder, name)


def _plain(value):
    """`value` with numpy scalars and arrays made Python's and non-finite floats made None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
