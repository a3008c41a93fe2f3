"""`ragtune data prepare`: writes the prepared folder, prints a summary or JSON, and errors with exit code 1."""

from __future__ import annotations

import json

import typer
from data_helpers import qa_rows, write_jsonl
from typer.testing import CliRunner

from ragtune.data import read_prepared
from ragtune.data.cli import data_app

runner = CliRunner()
app = typer.Typer()
app.add_typer(data_app, name="data")


def test_prepare_writes_the_dataset_and_reports_as_json(tmp_path, tiny_model_dir):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(40) + ["{broken"])
    out = tmp_path / "prepared"
    result = runner.invoke(app, ["data", "prepare", "--train", f"{train}:task=facts", "--model", str(tiny_model_dir),
                                 "--project", str(tmp_path / "proj"), "--out", str(out), "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["out"] == str(out)
    assert report["splits"] == {"train": 32, "val": 4, "test": 4, "train_weighted": 32}
    assert report["removed"] == [{"origin": f"{train}:41", "reason": "invalid JSON",
                                  "detail": "Expecting property name enclosed in double quotes (column 2)"}]
    assert report["options"]["seed"] == 3 and report["mixture"] == {"facts": 32}
    data = read_prepared(out)
    assert len(data.test) == 4 and all(e.task == "facts" for e in data.train)


def test_prepare_prints_a_summary_into_the_project(tmp_path, tiny_model_dir):
    train = write_jsonl(tmp_path / "qa.jsonl", qa_rows(20) + qa_rows(1))
    project = tmp_path / "proj"
    result = runner.invoke(app, ["data", "prepare", "--train", str(train), "--model", str(tiny_model_dir),
                                 "--project", str(project), "--test-fraction", "0"])
    assert result.exit_code == 0, result.output
    assert "exact duplicate" in result.stdout and "only 18 training rows" in result.stdout
    assert (project / ".ragtune" / "datasets" / "qa-sft" / "report.md").is_file()


def test_prepare_errors_exit_with_code_1(tmp_path, tiny_model_dir):
    missing = runner.invoke(app, ["data", "prepare", "--train", str(tmp_path / "nope.jsonl"), "--model",
                                  str(tiny_model_dir), "--project", str(tmp_path / "proj")])
    assert missing.exit_code == 1 and "nope.jsonl: no such file" in " ".join(missing.output.split())
    bad_option = runner.invoke(app, ["data", "prepare", "--train", "x.jsonl", "--objective", "dpo",
                                     "--project", str(tmp_path / "proj")])
    assert bad_option.exit_code == 1 and "invalid options: objective" in " ".join(bad_option.output.split())
