"""Fine-tuning end to end on the real packaged models: RAFT data from the bundled corpus, LoRA training of
SmolLM2, the run answering through llama.cpp with its GGUF adapter, and a merged export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.data import parse_dataset_spec
from ragtune.demo import demo_corpus_dir, demo_questions
from ragtune.models.base import GenerationConfig
from ragtune.models.llamacpp_engine import LlamaCppEngine
from ragtune.models.loading import load_generator
from ragtune.training.artifacts import export_merged
from ragtune.training.recipe import resolve_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def raft_run(tmp_path_factory):
    from ragtune.project import Project

    root = tmp_path_factory.mktemp("finetune")
    project = Project(root / "project", {"generation": {"max_new_tokens": 24}})
    project.ingest([str(demo_corpus_dir())])
    questions = root / "questions.jsonl"
    rows = [row for row in demo_questions() if len(row["answer"].split()) <= 8][:12]
    questions.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}) + "\n"
                                 for r in rows), encoding="utf-8")
    recipe = resolve_recipe("lora", overrides={"objective": "raft", "max_steps": 2, "batch_size": 2,
                                               "data": {"raft_k": 2, "max_seq_length": 1024}})
    result = project.finetune([parse_dataset_spec(str(questions))], recipe)
    yield project, result
    project.close()


def test_raft_run_is_complete_and_served_by_llamacpp_with_its_adapter(raft_run):
    project, result = raft_run
    metadata = result.metadata
    assert metadata["objective"] == "raft" and metadata["base_model"] == "smollm2-135m"
    assert metadata["llamacpp_file"] == "adapter.gguf" and metadata["tokens_seen"] > 0
    train_rows = [json.loads(line) for line in (result.run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert all("Passages:" in row["messages"][-2]["content"] for row in train_rows)

    engine = load_generator(str(result.run_dir))
    assert isinstance(engine, LlamaCppEngine) and engine.lora_path.endswith("adapter.gguf")
    answer = project.ask(demo_questions()[0]["question"], k=2, model=str(result.run_dir))
    assert answer.answer and answer.passages


def test_merged_export_is_a_standalone_model(raft_run, tmp_path):
    _, result = raft_run
    written = export_merged(result.run_dir, Path(result.metadata["base_checkpoint"]), tmp_path / "merged")
    assert (Path(written["model_dir"]) / "config.json").is_file()
    engine = load_generator(written["gguf"])
    assert engine.generate([{"role": "user", "content": "Name a coronavirus."}], GenerationConfig(max_new_tokens=8)).text
