"""Crash at any point and resume: real `ragtune` processes SIGKILLed at stage boundaries and in the middle of
stages (points from a seeded schedule and from what the process has written so far), then resumed, must end
exactly where an uninterrupted run ends: the same store and indexes after `ingest`, the same weights and loss log
after `finetune`, the same results.json (timings aside) after `compare --update-split`."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from corpus_files import FACTS
from crash_harness import RAGTUNE, KillPoint, any_match, file_exists, run_once, run_with_crashes

WORDS = ("river mountain harbour orchard glacier canyon meadow volcano desert forest island lagoon prairie "
         "tundra reef delta plateau marsh valley estuary").split()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The children's environment: one torch thread each, this test run's model cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------------- ingest

INGEST_YAML = {"chunking": {"chunk_tokens": 32, "overlap_tokens": 0},
               "models": {"embedder_runtime": "torch"}}
COMMIT_CHUNKS = 512  # ragtune.knowledge.ingest.EMBED_BATCH_CHUNKS: sources are committed in batches this large


def write_documents(folder: Path, count: int = 300, seed: int = 0) -> Path:
    """`count` distinct files of four short paragraphs each (four 32-token chunks a file)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(22)) + f" note {i}-{p}." for p in range(4)]
        (folder / f"doc-{i:03d}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return folder


def new_project(root: Path, settings: dict) -> Path:
    root.mkdir(parents=True)
    (root / "ragtune.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return root


def stored_chunks(project: Path) -> Callable[[], int]:
    def count() -> int:
        try:
            with sqlite3.connect(f"file:{project / '.ragtune' / 'knowledge.sqlite'}?mode=ro", uri=True,
                                 timeout=0.05) as db:
                return db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        except sqlite3.Error:  # not created yet, or busy for a moment
            return 0
    return count


def store_contents(project: Path) -> dict:
    """Everything the store holds, keyed by content (row ids may differ between runs); vectors separately."""
    with sqlite3.connect(project / ".ragtune" / "knowledge.sqlite") as db:
        sources = sorted(db.execute("SELECT root, key, kind, fingerprint, size_bytes, status, note FROM sources"))
        documents = sorted(db.execute(
            "SELECT s.key, d.part, d.title, d.text, d.content_hash, d.metadata FROM documents d "
            "JOIN sources s ON s.id = d.source_id"))
        rows = sorted(db.execute(
            "SELECT d.content_hash, c.ordinal, c.text, c.heading, c.start_char, c.end_char, c.token_count, "
            "c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"))
        runs = db.execute("SELECT count(*), count(finished_at) FROM ingest_runs").fetchone()
    chunks = [row[:-1] for row in rows]
    vectors = np.stack([np.frombuffer(row[-1], dtype=np.float32) for row in rows])
    return {"sources": sources, "documents": documents, "chunks": chunks, "vectors": vectors, "runs": runs}


def ragtune_json(args: list[str], *, cwd: Path, env: dict):
    completed = run_once([*RAGTUNE, *args, "--json"], cwd=cwd, env=env)
    assert completed.returncode == 0, completed.stdout
    return json.loads(completed.stdout)


def test_a_killed_ingest_resumes_to_the_same_store_and_indexes(tmp_path, env):
    docs = write_documents(tmp_path / "docs")
    straight = new_project(tmp_path / "straight", INGEST_YAML)
    ingest = [*RAGTUNE, "ingest", str(docs), "--project"]
    assert run_once([*ingest, str(straight)], cwd=tmp_path, env=env).returncode == 0
    expected = store_contents(straight)
    total = len(expected["chunks"])
    assert total == 1200 and total > 2 * COMMIT_CHUNKS  # three commits: kills fall between and inside them

    rng = random.Random(11)
    crashed = new_project(tmp_path / "crashed", INGEST_YAML)
    chunks = stored_chunks(crashed)
    kills = [KillPoint("while loading or embedding the first batch", lambda: True, rng.uniform(3, 9)),
             KillPoint("right after the first commit", lambda: chunks() >= COMMIT_CHUNKS),
             KillPoint("inside the next batch", lambda: chunks() >= COMMIT_CHUNKS, rng.uniform(0.3, 2.0)),
             KillPoint("after the last commit, syncing the indexes", lambda: chunks() >= total)]
    _, crashes = run_with_crashes([*ingest, str(crashed)], [*ingest, str(crashed)], kills, cwd=tmp_path, env=env)
    assert len(crashes.killed_at) >= 3, crashes  # the last point may come too late on a fast machine

    actual = store_contents(crashed)
    for table in ("sources", "documents", "chunks"):
        assert actual[table] == expected[table], table
    np.testing.assert_allclose(actual["vectors"], expected["vectors"], atol=1e-5)
    assert actual["runs"][1] >= 1  # the completing run was recorded as finished

    status = ragtune_json(["status", "--project", str(crashed)], cwd=tmp_path, env=env)
    assert status["chunks"] == total
    assert status["vector_index"]["vectors"] == total and status["lexical_index"]["chunks"] == total
    for query in ("volcano near the harbour", "note 17-2", "glacier canyon meadow"):
        hits = [ragtune_json(["search", query, "--k", "5", "--project", str(project)], cwd=tmp_path, env=env)
                for project in (straight, crashed)]
        assert [(h["source"], h["text"]) for h in hits[1]] == [(h["source"], h["text"]) for h in hits[0]], query


# -------------------------------------------------------------------------------------------------- finetune

TRAIN_RECIPE = {"method": "lora", "max_steps": 12, "batch_size": 4, "save_every": 3, "dropout": 0.1,
                "learning_rate": 0.01, "warmup": 0, "seed": 3, "data": {"val_fraction": 0.0}}
LOGGED = ("step", "loss", "grad_norm", "learning_rate", "tokens_seen")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def finetune_command(tmp_path: Path, tiny_llama: Path, out: Path) -> tuple[list[str], list[str]]:
    rows = [{"question": f"What colour is box {i}?", "answer": ["red", "blue", "green"][i % 3]} for i in range(40)]
    train = tmp_path / "qa.jsonl"
    if not train.exists():
        train.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(TRAIN_RECIPE), encoding="utf-8")
    project = ["--project", str(tmp_path / "project")]
    first = [*RAGTUNE, "finetune", "--model", str(tiny_llama), "--train", str(train),
             "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(out), *project]
    return first, [*RAGTUNE, "finetune", "--resume", "--out", str(out), *project]


def training_outcome(run: Path) -> tuple[dict, list[dict]]:
    from safetensors.torch import load_file

    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    return weights, [{key: record.get(key) for key in LOGGED} for record in log if "loss" in record]


def test_a_killed_training_run_without_validation_resumes_to_the_same_weights_and_loss_log(tmp_path, env,
                                                                                          tiny_llama):
    import torch

    first, _ = finetune_command(tmp_path, tiny_llama, tmp_path / "straight")
    assert run_once(first, cwd=tmp_path, env=env).returncode == 0
    expected_weights, expected_log = training_outcome(tmp_path / "straight")
    assert [record["step"] for record in expected_log] == list(range(1, 13))  # a loss line every step

    crashed = tmp_path / "crashed"
    first, resume = finetune_command(tmp_path, tiny_llama, crashed)
    checkpoints = crashed.with_name("crashed.partial") / "checkpoints"
    rng = random.Random(5)
    kills = [KillPoint("before the first checkpoint", any_match(crashed.with_name("crashed.partial"), "log.jsonl")),
             KillPoint("as checkpoint 3 appears", any_match(checkpoints, "checkpoint-3")),
             KillPoint("between checkpoints 6 and 9", any_match(checkpoints, "checkpoint-6"), rng.uniform(0.2, 1.0)),
             KillPoint("writing the finished run", any_match(crashed.with_name("crashed.partial"), "adapter"))]
    _, crashes = run_with_crashes(first, resume, kills, cwd=tmp_path, env=env)
    assert len(crashes.killed_at) >= 3, crashes

    weights, log = training_outcome(crashed)
    assert [r["step"] for r in log] == [r["step"] for r in expected_log]  # each step logged once, none lost
    for got, want in zip(log, expected_log):
        assert got["tokens_seen"] == want["tokens_seen"], got
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6) and got["grad_norm"] == pytest.approx(
            want["grad_norm"], abs=1e-5), got
    assert weights.keys() == expected_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], expected_weights[name], rtol=0, atol=1e-6, msg=name)



# --------------------------------------------------------------------------------------------------- compare

MEASURED_TIME_OR_SIZE = re.compile(r"seconds|latency|_s$|_gb$|_mb$|memory|cost|created|resumed|tokens_per_second")


def write_experiment(tmp_path: Path, tiny_llama: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = []
    for name, facts in FACTS.items():
        (docs / name).write_text(f"Notes about {name[:-4]}. " + " ".join(f"{q.rstrip('?')}: {a}." for q, a in facts),
                                 encoding="utf-8")
        rows += [{"id": f"{name[:-4]}-{i}", "question": q, "answer": a, "source": name}
                 for i, (q, a) in enumerate(facts)]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    experiment = {"docs": str(docs), "train": str(tmp_path / "questions.jsonl"), "model": str(tiny_llama),
                  "strategies": ["base", "rag", "ft"], "test_fraction": 0.3, "update_split": 0.5, "k": 2,
                  "budget": {"sft_max_steps": 6, "batch_size": 4, "max_seq_length": 256, "max_new_tokens": 8}}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    return path


def comparable(results: dict, out: Path):
    """results.json without what is measured in time or size (it differs between any two runs), with the output
    directory written as OUT, and the recommendation reduced to its verdict (its wording quotes measurements)."""
    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if not MEASURED_TIME_OR_SIZE.search(key)}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value.replace(str(out), "OUT") if isinstance(value, str) else value
    recommendation = results["recommendation"]
    return {**strip({key: value for key, value in results.items() if key != "recommendation"}),
            "recommendation": (recommendation["verdict"], recommendation["strategy"])}


def test_a_killed_comparison_with_a_knowledge_update_resumes_to_the_same_results(tmp_path, env, tiny_llama):
    experiment = write_experiment(tmp_path, tiny_llama)
    compare = [*RAGTUNE, "compare", "--experiment", str(experiment), "--out"]
    assert run_once([*compare, str(tmp_path / "straight")], cwd=tmp_path, env=env).returncode == 0
    expected = json.loads((tmp_path / "straight" / "results.json").read_text(encoding="utf-8"))
    assert expected["knowledge_update"]["new_questions"] > 0

    out = tmp_path / "crashed"
    stage = lambda name: file_exists(out / "stages" / f"{name}.json")  # noqa: E731
    rng = random.Random(7)
    kills = [KillPoint("ingesting", file_exists(out / "stages" / "questions.json"), rng.uniform(0.5, 3)),
             KillPoint("as the ingest is recorded", stage("ingest")),
             KillPoint("training", file_exists(out / "runs" / "sft.partial" / "log.jsonl"), rng.uniform(0, 0.5)),
             KillPoint("as training is recorded", stage("train-sft")),
             KillPoint("evaluating", stage("eval-base"), rng.uniform(0.2, 1.5)),
             KillPoint("the further training finished, not yet recorded", file_exists(out / "runs" / "sft-update")),
             KillPoint("measuring the update", file_exists(out / "runs" / "sft-update"), rng.uniform(0.5, 2.5))]
    resume = [*compare, str(out), "--resume"]
    _, crashes = run_with_crashes([*compare, str(out)], resume, kills, cwd=tmp_path, env=env)
    assert len(crashes.killed_at) >= 5, crashes

    actual = json.loads((out / "results.json").read_text(encoding="utf-8"))
    actual, expected = comparable(actual, out), comparable(expected, tmp_path / "straight")
    assert actual == expected or _explain(actual, expected)


def _explain(actual, expected, path="results"):
    """Fail naming the first field that differs."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            _explain(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        for i, (a, e) in enumerate(zip(actual, expected)):
            _explain(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, path
    return True
