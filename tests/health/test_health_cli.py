"""`ragtune health`: terminal summary, JSON, the HTML dashboard (escaped, no scripts) and --fail-on exit status."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def test_health_json_terminal_html_and_fail_on(project, corpus, tmp_path):
    hostile = corpus / "<img src=x onerror=alert(1)>.txt"
    hostile.write_text("An old note about <b>comets</b>: they orbit the Sun on long elliptical paths.")
    project.ingest([str(corpus)])
    hostile.unlink()  # gone from its origin: a warning naming the hostile file
    root = str(project.workspace.root)

    result = runner.invoke(app, ["health", "--project", root, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "warning" and report["counts"]["sources"] == 5
    assert [f["check"] for f in report["findings"]] == ["gone_from_origin"]

    dashboard = tmp_path / "out" / "health.html"
    terminal = runner.invoke(app, ["health", "--project", root, "--html", str(dashboard)])
    assert terminal.exit_code == 0 and "gone from their origin" in terminal.stdout
    page = dashboard.read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page and "<img src=x" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") >= 1  # the chunk-length histogram

    assert runner.invoke(app, ["health", "--project", root, "--fail-on", "warning"]).exit_code == 1
    assert runner.invoke(app, ["health", "--project", root, "--fail-on", "error"]).exit_code == 0
    wrong = runner.invoke(app, ["health", "--project", root, "--fail-on", "bad"])
    assert wrong.exit_code == 1 and "--fail-on warning" in wrong.output
