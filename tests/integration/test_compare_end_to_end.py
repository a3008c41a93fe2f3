"""`ragtune demo --quick` on the real packaged models: every default strategy built and evaluated on the bundled
COVID-QA subset with a tiny budget, the report written and a strategy recommended."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragtune.cli import app

pytestmark = pytest.mark.integration


def test_quick_demo_compares_the_default_strategies_on_real_models(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)

    assert list(results["strategies"]) == ["base", "rag", "ft", "ft+rag", "raft"]
    rag, base = results["strategies"]["rag"], results["strategies"]["base"]
    assert rag["metrics"]["recall_at_k"]["value"] >= 0.5  # MiniLM + BM25 find the gold article
    assert rag["cost"]["prompt_tokens_per_question"] > 3 * base["cost"]["prompt_tokens_per_question"]
    for name in ("ft", "ft+rag", "raft"):
        assert results["strategies"][name]["cost"]["train_seconds"] > 0
    assert results["recommendation"]["strategy"] in results["strategies"]
    assert results["recommendation"]["reasons"]
    html = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and results["recommendation"]["strategy"] in html
    # No price per hour was given: costs are machine time, never "$0".
    for entry in results["strategies"].values():
        assert entry["cost"]["machine_seconds_per_1000_questions"] == pytest.approx(1000 * entry["latency"]["mean_s"])
    assert "machine time / 1,000 questions" in html
    assert "$" not in " ".join(reason["text"] for reason in results["recommendation"]["reasons"])
