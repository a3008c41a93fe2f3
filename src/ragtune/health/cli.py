"""`ragtune health`: the knowledge base's and the served traffic's findings in the terminal, JSON or HTML, with an
exit status for cron and CI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ragtune.cli import JsonOption, ProjectOption, _print_json, _project, _user_errors, console, err_console


@_user_errors
def health(project: Path = ProjectOption, as_json: bool = JsonOption,
           html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML dashboard."),
           fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit with status 1 when a finding of this "
                                                 "severity or worse exists: warning or error."),
           probe: Optional[Path] = typer.Option(None, "--probe", help="A JSONL probe set ({question, source} lines): "
                                                "recall@k is recorded at every run (or set health.probe_set)."),
           examples: int = typer.Option(3, "--examples", min=0, help="Examples shown per finding in the terminal.")):
    """Check the knowledge base (content, freshness, consistency, drift) and what the server answered (traffic,
    coverage, feedback): each finding with its evidence and what to do."""
    from ragtune.errors import RagtuneError
    from ragtune.health.render import dashboard_html, print_report
    from ragtune.health.report import check_health
    from ragtune.progress import rich_progress

    if fail_on not in (None, "warning", "error"):
        raise RagtuneError(f"--fail-on {fail_on}: unknown severity", "use --fail-on warning or --fail-on error")
    opened = _project(project, existing=True)
    try:
        with rich_progress(err_console) as progress:
            report = check_health(opened, probe_set=probe, progress=progress)
    finally:
        opened.close()
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(dashboard_html(report), encoding="utf-8")
    if as_json:
        _print_json(report.to_dict())
    else:
        print_report(report, console, examples)
        if html is not None:
            console.print(f"dashboard: {html}")
    if fail_on and report.at_least(fail_on):
        raise typer.Exit(1)
