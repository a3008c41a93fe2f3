"""The `ragtune` command: thin wrappers over the Python API (`ragtune.project.Project`)."""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ragtune.config import CHAT_REPETITION_PENALTY
from ragtune.errors import RagtuneError

app = typer.Typer(help="Build RAG and fine-tuned models on your own documents and compare them.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


@app.callback()
def _configure(store: Optional[str] = typer.Option(
        None, "--store", metavar="URL",
        help="The knowledge base's database for this command, e.g. postgresql://user@host/db (as storage.url; "
             "prefer RAGTUNE_STORE_URL or a password file for a password: a command line is visible to others)."),
) -> None:
    """Options for every command; warnings go to stderr in one format (ragtune.logs)."""
    import os

    from ragtune.knowledge.storage import STORE_URL_VARIABLE
    from ragtune.logs import send_warnings_to_stderr

    if store:
        os.environ[STORE_URL_VARIABLE] = store  # what this command and the processes it starts use
    send_warnings_to_stderr(err_console)


ProjectOption = typer.Option(Path("."), "--project", "-p", help="Project directory (config and stores).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
WhereOption = typer.Option([], "--where", metavar="KEY=VALUE",
                           help="Only documents whose metadata has this value (repeat for several; true, false and "
                                'numbers are compared as such, "quoted" values as text).')


def metadata_filter(conditions: list[str]) -> dict:
    """`--where KEY=VALUE` options as a metadata filter (see ragtune.knowledge.types.ChunkFilter): true, false and
    JSON numbers are compared as such, anything else (or a value in double quotes) as text."""
    wanted = {}
    for condition in conditions:
        key, equals, text = condition.partition("=")
        if not equals or not key.strip():
            raise RagtuneError(f"--where {condition!r}: expected KEY=VALUE", "for example --where department=HR")
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            value: object = text[1:-1]
        elif text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif JSON_NUMBER.fullmatch(text):
            value = json.loads(text)
        else:
            value = text
        wanted[key.strip()] = value
    return wanted


def _user_errors(command):
    """Turn ragtune errors into a red message with its hint and exit code 1, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RagtuneError as error:
            err_console.print(f"[bold red]error:[/] {error.message}")
            if error.hint:
                err_console.print(f"[yellow]hint:[/] {error.hint}")
            raise typer.Exit(1)

    return wrapper


def _project(path: Path, *, existing: bool = False, **overrides):
    """The project at `path`; `existing`: refuse a directory that holds none (commands that only read it)."""
    from ragtune.project import Project
    from ragtune.workspace import Workspace

    if existing:
        Workspace.require(path)
    return Project(path, {section: values for section, values in overrides.items() if values})


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


@app.command()
@_user_errors
def ingest(paths: list[str] = typer.Argument(..., help="Files, directories, http(s) JSON APIs or database URLs."),
           prune: bool = typer.Option(False, help="Remove stored sources that no longer exist under the given "
                                                  "directories."),
           text_field: Optional[str] = typer.Option(None, help="Field holding the text in JSON/JSONL/CSV/API records."),
           sql: Optional[str] = typer.Option(None, help="SELECT query to run against database URLs."),
           project: Path = ProjectOption, as_json: bool = JsonOption):
    """Add or update sources in the knowledge base (unchanged sources are skipped)."""
    from ragtune.progress import rich_progress

    started = time.perf_counter()
    proj = _project(project)
    if as_json:
        report = proj.ingest(paths, prune=prune, text_field=text_field, sql=sql)
        _print_json(report.to_dict())
    else:
        with rich_progress(err_console) as progress:
            report = proj.ingest(paths, prune=prune, text_field=text_field, sql=sql, progress=progress)
        _print_ingest_report(report, proj.kb.store.counts(), time.perf_counter() - started)
    if report.failed:  # what could be read is stored; the exit code tells a script that something was not
        raise typer.Exit(1)


def _print_ingest_report(report, totals: dict, seconds: float) -> None:
    """What the run changed, what the knowledge base now holds, then source by source."""
    console.print(f"[green]added[/] {len(report.added)}  [cyan]updated[/] {len(report.updated)}  "
                  f"[dim]unchanged[/] {len(report.unchanged)}  [magenta]removed[/] {len(report.removed)}  "
                  f"[yellow]skipped[/] {len(report.skipped)}  [red]rejected[/] {len(report.rejected)}  in "
                  f"{seconds:.1f} s: {_count(report.documents, 'document')} and {_count(report.chunks, 'chunk')} "
                  f"stored; the knowledge base holds {_count(totals['documents'], 'document')} and "
                  f"{_count(totals['chunks'], 'chunk')}")
    for kind, keys in (("added", report.added), ("updated", report.updated), ("removed", report.removed)):
        for key in keys:
            console.print(f"  {kind:<8} {key}")
    for rejection in report.rejected:
        console.print(f"  [red]rejected[/] {rejection['source']}: {rejection['reason']}")
        if rejection.get("hint"):
            console.print(f"           [yellow]hint:[/] {rejection['hint']}")
    if report.missing:
        shown = ", ".join(report.missing[:3]) + (f" and {len(report.missing) - 3} more" if len(report.missing) > 3
                                                 else "")
        console.print(f"  [yellow]hint:[/] still in the knowledge base, gone from the given directories: {shown}; "
                      f"ingest again with --prune to remove {'it' if len(report.missing) == 1 else 'them'}")
    for skipped in report.skipped_documents:
        console.print(f"  [yellow]skipped[/]  {skipped['source']}: {skipped['reason']}")
    for warning in report.warnings:
        console.print(f"  [yellow]warning[/]  {warning['source']}: {warning['message']}")


@app.command()
@_user_errors
def search(query: Optional[str] = typer.Argument(None, help="The query (or use --queries)."),
           k: int = typer.Option(5, "--k", min=1, help="Number of hits."),
           mode: str = typer.Option("hybrid", help="dense | lexical | hybrid"),
           source: Optional[str] = typer.Option(None, help="Only sources whose path matches this glob."),
           where: list[str] = WhereOption,
           queries: Optional[Path] = typer.Option(None, help='JSONL file of {"id", "query"} lines; writes one '
                                                             '{"id", "hits"} line per query.'),
           project: Path = ProjectOption, as_json: bool = JsonOption):
    """Retrieve the chunks most relevant to a query."""
    if mode not in ("dense", "lexical", "hybrid"):
        raise RagtuneError(f"unknown mode '{mode}'", "use dense, lexical or hybrid")
    metadata = metadata_filter(where)
    proj = _project(project, existing=True)
    proj.require_documents()
    if queries is not None:
        from ragtune.queries import read_queries

        rows = read_queries(queries)
        for row, hits in zip(rows, proj.search_batch([r["query"] for r in rows], k, mode, source, metadata)):
            sys.stdout.write(json.dumps({"id": row["id"], "hits": [h.to_dict() for h in hits]}, ensure_ascii=False)
                             + "\n")
        return
    if query is None:
        raise RagtuneError("no query given", "pass a QUERY argument or --queries FILE")
    hits = proj.search(query, k, mode, source, metadata)
    if as_json:
        _print_json([h.to_dict() for h in hits])
        return
    table = Table("#", "score", "source", "chunk", "text", show_lines=True)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.4f}", hit.source, str(hit.chunk_id), hit.text[:300])
    console.print(table)


@app.command()
@_user_errors
def ask(question: str = typer.Argument(..., help="The question."),
        k: Optional[int] = typer.Option(None, "--k", help="Passages to retrieve; 0 answers closed book."),
        model: Optional[str] = typer.Option(None, help="Generator: a name from `ragtune models`, a .gguf file, "
                                                        "a model directory or openai:MODEL@BASE_URL."),
        source: Optional[str] = typer.Option(None, help="Only retrieve from sources matching this glob."),
        where: list[str] = WhereOption,
        repetition_penalty: Optional[float] = typer.Option(
            None, "--repetition-penalty", min=1.0, max=2.0,
            help=f"Against loops, as `ragtune serve` answers (default {CHAT_REPETITION_PENALTY} with a local model, "
                 "the server's own with openai:; 1: off, as `compare` measures)."),
        project: Path = ProjectOption, as_json: bool = JsonOption):
    """Answer a question from the knowledge base, with citations (streams in the terminal)."""
    metadata = metadata_filter(where)
    proj = _project(project, existing=True)
    if (proj.config.retrieval.k if k is None else k) > 0:
        proj.require_documents(", or ask with --k 0 to answer closed book")
    options = {"k": k, "model": model, "source_glob": source, "metadata": metadata,
               "repetition_penalty": repetition_penalty}
    if as_json:
        _print_json(proj.ask(question, **options).to_dict())
        return
    answer = proj.ask(question, **options,
                      on_text=lambda piece: console.print(piece, end="", markup=False, highlight=False))
    console.print()
    _print_citations(answer)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_citations(answer) -> None:
    for citation in answer.citations:
        console.print(f"  [cyan][{citation['number']}][/] {citation['source']} (chunk {citation['chunk_id']})")
    t = answer.timings
    console.print(f"[dim]{t['completion_tokens']} tokens, {t['tokens_per_second']} tok/s, "
                  f"retrieval {t['retrieval_ms']} ms, total {t['total_s']} s[/]")


@app.command()
@_user_errors
def status(project: Path = ProjectOption, as_json: bool = JsonOption):
    """Counts of sources, documents and chunks, index sizes and models in use."""
    data = _project(project, existing=True).status()
    if as_json:
        _print_json(data)
        return
    if data.get("last_ingest"):  # times as people read them (--json keeps seconds since the epoch)
        data["last_ingest"] = {key: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
                               if key in ("started_at", "finished_at") and value else value
                               for key, value in data["last_ingest"].items()}
    table = Table("what", "value")
    for key, value in data.items():
        table.add_row(key, json.dumps(value, default=str) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
@_user_errors
def models(as_json: bool = JsonOption):
    """List the generators and embedders available offline and where they come from."""
    from ragtune.models.registry import list_models

    rows = list_models()
    if as_json:
        _print_json(rows)
        return
    table = Table("name", "role", "kind", "available", "source", "location / install")
    for row in rows:
        where = row.get("location") or row.get("install_hint") or ""
        table.add_row(row["name"], row["role"], row["kind"], "yes" if row["available"] else "[red]no[/]",
                      row.get("source", ""), str(where))
    console.print(table)
    console.print("Also accepted: a local .gguf file, a Hugging Face model directory, a sentence-transformers "
                  "directory (embedder), or openai:MODEL@BASE_URL for an OpenAI-compatible server.")


@app.command()
@_user_errors
def demo(out: Path = typer.Option(Path("ragtune-demo"), "--out", "--project", "-p", help="Output directory."),
         quick: bool = typer.Option(False, "--quick", help="A small budget (a few minutes)."),
         resume: bool = typer.Option(False, "--resume", help="Reuse the finished stages in --out."),
         as_json: bool = JsonOption):
    """The main job on built-in defaults: compare base, rag, ft, ft+rag and raft on the bundled COVID-QA subset,
    write the report and recommend a strategy."""
    from ragtune.demo import demo_experiment
    from ragtune.evaluation.cli import show_results
    from ragtune.evaluation.compare import run_compare

    results = run_compare(demo_experiment(quick=quick), out, resume=resume, console=None if as_json else err_console)
    show_results(results, out, as_json)
    if not as_json:
        console.print(f"serve it to your team: ragtune serve --from-compare {out}")


def _register_command_groups() -> None:
    """Commands defined beside their packages (they import helpers from this module)."""
    from ragtune.arena.cli import arena_app
    from ragtune.data.cli import data_app
    from ragtune.evaluation.cli import advise, compare, eval_command
    from ragtune.health.cli import health
    from ragtune.knowledge.store_cli import store_app
    from ragtune.serve.cli import serve
    from ragtune.training.cli import export, finetune

    app.command()(finetune)
    app.command()(export)
    app.command("eval")(eval_command)
    app.command()(compare)
    app.command()(advise)
    app.command()(serve)
    app.command()(health)
    app.add_typer(data_app, name="data", help="Prepare training data: formats, cleaning, splits, RAFT.")
    app.add_typer(arena_app, name="arena")
    app.add_typer(store_app, name="store")


_register_command_groups()

if __name__ == "__main__":
    app()
