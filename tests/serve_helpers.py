"""Helpers for the server's tests: a scripted generation engine and a live uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time

from ragtune.models.base import Generation


class ScriptedEngine:
    """A generation engine double: answers every conversation with `reply`, streamed word by word."""

    def __init__(self, name: str, reply: str = "Olympus Mons on Mars is the tallest volcano [1]."):
        self.name, self.reply, self.prompts = name, reply, []

    def generate(self, messages, config):
        self.prompts.append(messages)
        return Generation(self.reply, prompt_tokens=40, completion_tokens=len(self.reply.split()), seconds=0.01)

    def stream(self, messages, config):
        self.prompts.append(messages)
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            time.sleep(0.001)  # let concurrent streams interleave if anything let them
            yield word if i == 0 else " " + word

    def count_tokens(self, text):
        return len(text.split())


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
