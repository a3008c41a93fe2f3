"""`ragtune finetune` and `ragtune export` from the command line, on a tiny Llama."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.models.base import GenerationConfig

runner = CliRunner()


def test_finetune_json_prints_the_metadata_and_recipe_file_is_overridden_by_flags(tiny_model, qa_file, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: dora\nmax_steps: 50\nlora_rank: 2\nbatch_size: 4\n", encoding="utf-8")
    result = runner.invoke(app, ["finetune", "--train", str(qa_file), "--model", str(tiny_model), "--recipe",
                                 str(recipe), "--max-steps", "3", "--project", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.stdout)
    assert metadata["method"] == "dora" and metadata["steps"] == 3  # the flag beat the file's 50
    assert metadata["recipe_changes"]["lora_rank"] == 2


def test_finetune_prints_the_run_directory_last(tiny_model, qa_file, tmp_path):
    result = runner.invoke(app, ["finetune", "--train", str(qa_file), "--model", str(tiny_model), "--max-steps",
                                 "2", "--method", "freeze", "--project", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    run_dir = result.stdout.strip().splitlines()[-1]
    assert json.loads((tmp_path / "p" / ".ragtune" / "runs").joinpath(run_dir.rsplit("/", 1)[1],
                                                                     "metadata.json").read_text())["steps"] == 2


def test_bad_input_gets_a_message_and_hint_not_a_traceback(tiny_model, qa_file, tmp_path):
    cases = {
        ("--method", "lorax"): "unknown method 'lorax'",
        ("--train", str(tmp_path / "missing.jsonl")): "missing.jsonl",
        ("--max-seq-length", "100000"): "longer than the model's context",
    }
    for extra, message in cases.items():
        arguments = ["finetune", "--train", str(qa_file), "--model", str(tiny_model), "--max-steps", "1",
                     "--project", str(tmp_path / "p"), *extra]
        result = runner.invoke(app, arguments)
        assert result.exit_code == 1, (extra, result.output)
        assert message in result.output and "hint:" in result.output, result.output
        assert "Traceback" not in result.output


def test_export_merge_writes_a_loadable_model(tiny_model, qa_file, tmp_path):
    trained = runner.invoke(app, ["finetune", "--train", str(qa_file), "--model", str(tiny_model), "--max-steps",
                                  "2", "--project", str(tmp_path / "p"), "--out", str(tmp_path / "run"), "--json"])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(app, ["export", str(tmp_path / "run"), "--merge", "--json"])
    assert exported.exit_code == 0, exported.output
    merged = json.loads(exported.stdout)["model_dir"]

    from ragtune.models.loading import load_generator

    engine = load_generator(merged)
    answer = engine.generate([{"role": "user", "content": "What colour is box 1?"}], GenerationConfig(max_new_tokens=4))
    assert answer.text is not None
    refused = runner.invoke(app, ["export", str(tmp_path / "run")])
    assert refused.exit_code == 1 and "--merge" in refused.output


def test_resume_continues_the_latest_interrupted_run(tiny_model, qa_file, tmp_path):
    import pytest

    from ragtune.data import parse_dataset_spec
    from ragtune.training.finetune import finetune
    from ragtune.training.recipe import resolve_recipe

    from .test_finetune import StopAfterCheckpoint

    runs_dir = tmp_path / "p" / ".ragtune" / "runs"
    recipe = resolve_recipe("lora", overrides={"model": str(tiny_model), "max_steps": 6, "eval_every": 2,
                                               "save_every": 2})
    with pytest.raises(KeyboardInterrupt):
        finetune([parse_dataset_spec(str(qa_file))], recipe, runs_dir=runs_dir, callbacks=[StopAfterCheckpoint(2)])
    result = runner.invoke(app, ["finetune", "--resume", "--project", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.stdout)
    assert metadata["steps"] == 6 and metadata["sessions"] == 2
    assert not list(runs_dir.glob("*.partial"))


def test_warnings_reach_stderr_in_one_format(tiny_model, tmp_path):
    """In a fresh process, as a user runs it: without ragtune's own logging set-up, rouge-score's absl logging
    installs a bare root handler on import, and warnings print as `WARNING:ragtune.training.finetune:...`."""
    import os
    import subprocess
    import sys

    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "What colour is box 1?", "answer": "red"}\n{"question": "q2?", "answer": \n',
                    encoding="utf-8")
    completed = subprocess.run([sys.executable, "-m", "ragtune.cli", "finetune", "--train", str(data), "--model",
                                str(tiny_model), "--max-steps", "1", "--project", str(tmp_path / "p"), "--json"],
                               capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "200"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "WARNING  1 of 2 rows removed while cleaning (invalid JSON: 1)" in completed.stderr
    assert "WARNING:" not in completed.stderr
