"""What `ragtune serve --from-compare` and `--project` open: the project with the comparison's model and k, its
runs, their measured quality and the recommendation; clear errors for what is missing."""

from __future__ import annotations

import json

import pytest

from ragtune.errors import RagtuneError
from ragtune.serve.setup import open_server_state
from serve_helpers import finished_run


def test_from_compare_serves_its_project_runs_model_and_recommendation(project, corpus, tmp_path):
    from ragtune.project import Project

    compared = tmp_path / "compared"
    Project(compared / "project").ingest([str(corpus)])
    run = finished_run(compared / "runs" / "sft", "sft")
    metric = {"f1": {"value": 0.3, "ci_low": 0.2, "ci_high": 0.4}}
    (compared / "results.json").write_text(json.dumps({
        "config": {"model": "my-generator", "k": 2}, "metric_choice": {"metric": "f1"}, "test_set": {"n": 12},
        "recommendation": {"verdict": "recommended", "strategy": "ft"},
        "strategies": {"ft": {"model": str(run), "metrics": metric}}}))
    state = open_server_state(tmp_path / "ignored", from_compare=compared, api_key="k")
    assert state.project.config.models.generator == "my-generator" and state.project.config.retrieval.k == 2
    assert sorted(state.catalog.models) == ["base", "ft", "ft+rag", "rag"]
    assert state.catalog.default.id == "ft" and state.catalog.get("ragtune").quality["value"] == 0.3
    assert state.catalog.get("ft+rag").quality is None  # not measured by this comparison
    assert state.answer_log is not None and state.api_key == "k"


def test_a_project_serves_its_own_runs_and_rag_by_default(project, corpus):
    project.ingest([str(corpus)])
    finished_run(project.workspace.runs_dir / "run-1", "raft")
    state = open_server_state(project.workspace.root, record_answers=False)
    assert sorted(state.catalog.models) == ["base", "raft", "rag"] and state.catalog.default.id == "rag"
    assert state.answer_log is None


def test_missing_inputs_say_what_to_run(tmp_path):
    with pytest.raises(RagtuneError, match="results.json does not exist"):
        open_server_state(tmp_path, from_compare=tmp_path / "nothing")
    with pytest.raises(RagtuneError, match="is not a ragtune project"):
        open_server_state(tmp_path / "no-project")
