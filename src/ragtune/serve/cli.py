"""`ragtune serve`: the API and the web app over a project or over what a comparison built."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Optional

import typer

from ragtune.cli import ProjectOption, _user_errors, console, err_console
from ragtune.config import CHAT_REPETITION_PENALTY


@_user_errors
def serve(project: Path = ProjectOption,
          from_compare: Optional[Path] = typer.Option(None, "--from-compare", help="Serve what `ragtune compare "
                                                      "--out DIR` (or `ragtune demo`) built: its project and runs, "
                                                      "its recommendation as the default model."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (localhost by default)."),
          port: int = typer.Option(8000, "--port", min=1, max=65535),
          api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File whose first line is the "
                                                      "API key (else RAGTUNE_API_KEY; none: no key required)."),
          no_log: bool = typer.Option(False, "--no-log", help="Do not record answers (nor accept feedback)."),
          max_loaded: int = typer.Option(2, "--max-loaded-models", min=1, help="Models kept loaded at once "
                                         "(least recently used unloaded first)."),
          max_tokens: int = typer.Option(1024, "--max-tokens", min=1, help="Cap on a request's max_tokens."),
          repetition_penalty: Optional[float] = typer.Option(
              None, "--repetition-penalty", min=1.0, max=2.0,
              help=f"Chat default against loops, for requests that set none (default {CHAT_REPETITION_PENALTY} with "
                   "a local model, the server's own with openai:; 1: off)."),
          cors_origins: list[str] = typer.Option([], "--cors-origin", help="An origin (https://app.example.org) "
                                                 "whose pages may call the API; repeat for several. None by default.")):
    """Serve an OpenAI-compatible API (/v1) and a chat web app (/) over the project's documents, with every
    strategy it can answer with: base, rag and one per fine-tuning run."""
    import uvicorn

    from ragtune.serve.app import api_key_from, create_app
    from ragtune.serve.setup import open_server_state

    loopback = _is_loopback(host)
    state = open_server_state(project, from_compare=from_compare, api_key=api_key_from(api_key_file, os.environ),
                              record_answers=not no_log, max_loaded=max_loaded, max_tokens_cap=max_tokens,
                              allowed_hosts=LOOPBACK_NAMES if loopback else None, cors_origins=cors_origins,
                              repetition_penalty=repetition_penalty)
    if state.api_key is None and not loopback:
        err_console.print(f"[bold yellow]warning:[/] listening on {host} without an API key: anyone who can reach "
                          "this port can read the documents and use the models; pass --api-key-file or set "
                          "RAGTUNE_API_KEY")
    if not state.project.kb.store.has_chunks():
        err_console.print("[bold yellow]warning:[/] the knowledge base holds no documents yet: answers are closed "
                          "book until documents are ingested (`ragtune ingest DOCS --project "
                          f"{state.project.workspace.root}`) or uploaded in the web app")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"ragtune serving {state.project.workspace.root} at http://{shown}:{port}/ "
                  f"(API: http://{shown}:{port}/v1, default model: {state.catalog.default.id})")
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning")


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
