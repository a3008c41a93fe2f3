"""Helpers for the server's tests: a scripted generation engine and a live uvicorn server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time

from ragtune.models.base import Generation
from ragtune.serve.answer_log import AnswerLog
from ragtune.serve.app import ServerState
from ragtune.serve.catalog import ModelCatalog, discover_models


class ScriptedEngine:
    """A generation engine double: answers every conversation with `reply`, streamed word by word."""

    def __init__(self, name: str, reply: str = "Olympus Mons on Mars is the tallest volcano [1]."):
        self.name, self.reply, self.prompts, self.configs = name, reply, [], []

    def generate(self, messages, config):
        self.prompts.append(messages)
        self.configs.append(config)
        return Generation(self.reply, prompt_tokens=40, completion_tokens=len(self.reply.split()), seconds=0.01)

    def stream(self, messages, config):
        self.prompts.append(messages)
        self.configs.append(config)
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            time.sleep(0.001)  # let concurrent streams interleave if anything let them
            yield word if i == 0 else " " + word

    def count_tokens(self, text):
        return len(text.split())


def finished_run(folder, objective):
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"status": "finished", "objective": objective}))
    return folder


def make_state(project, *, api_key=None, run_dirs=(), comparison=None, record=True, max_loaded=2, opened=None,
               reply=None):
    opened = opened if opened is not None else []

    def open_engine(generator, context_tokens):
        opened.append(generator)
        return ScriptedEngine(generator, reply) if reply else ScriptedEngine(generator)

    catalog = ModelCatalog(project, discover_models("tiny-base", list(run_dirs), comparison), max_loaded=max_loaded,
                           open_engine=open_engine)
    return ServerState(project, catalog, api_key, AnswerLog(project.workspace.database_path) if record else None)


def start_live(app) -> tuple[str, object]:
    """Serve `app` with uvicorn on a free loopback port in a thread; returns (base URL, server)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server
