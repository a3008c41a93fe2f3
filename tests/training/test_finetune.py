"""The training loop on a tiny Llama: run directory contents, early stopping, exact resumption, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from ragtune.data import parse_dataset_spec
from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationConfig
from ragtune.models.loading import load_generator
from ragtune.training import runs
from ragtune.training.finetune import finetune
from ragtune.training.recipe import resolve_recipe

from .conftest import qa_rows, write_jsonl


class StopAfterCheckpoint(TrainerCallback):
    """Interrupt training right after the checkpoint of step `step` is written, as a kill would."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"killed after step {state.global_step}")


def lora_recipe(tiny_model, **overrides):
    settings = {"model": str(tiny_model), "max_steps": 12, "batch_size": 4, "lora_rank": 4, "eval_every": 3,
                "patience": 0, **overrides}
    return resolve_recipe("lora", overrides=settings)


def adapter_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / runs.ADAPTER_DIR / "adapter_model.safetensors")


def test_finished_run_directory_holds_everything(tiny_model, qa_file, tmp_path):
    result = finetune([parse_dataset_spec(str(qa_file))], lora_recipe(tiny_model), runs_dir=tmp_path / "runs")

    run = result.run_dir
    assert not run.name.endswith(runs.PARTIAL_SUFFIX) and not runs.partial_dir(run).exists()
    for name in ("recipe.yaml", "metadata.json", "log.jsonl", "curves.png", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/tokenizer.json", "data/train.jsonl",
                 "data/report.json"):
        assert (run / name).is_file(), name
    assert any((run / runs.TENSORBOARD_DIR).iterdir())
    assert not (run / runs.CHECKPOINTS_DIR).exists()
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["status"] == "finished" and metadata["method"] == "lora"
    assert metadata["tokens_seen"] > 0 and metadata["peak_memory_gb"] > 0 and metadata["train_seconds"] > 0
    assert metadata["rows"]["train"] + metadata["rows"]["val"] == 40
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "eval_loss" in r] == [0, 3, 6, 9, 12]  # 0: before training


def test_resumed_run_equals_an_uninterrupted_one(tiny_model, qa_file, tmp_path):
    spec = [parse_dataset_spec(str(qa_file))]
    # dropout makes the result depend on restored RNG state
    recipe = lora_recipe(tiny_model, dropout=0.1, save_every=3)
    straight = finetune(spec, recipe, runs_dir=tmp_path / "runs", out=tmp_path / "straight")

    with pytest.raises(KeyboardInterrupt):
        finetune(spec, recipe, runs_dir=tmp_path / "runs", out=tmp_path / "resumed",
                 callbacks=[StopAfterCheckpoint(6)])
    assert runs.partial_dir(tmp_path / "resumed").is_dir() and not (tmp_path / "resumed").exists()
    with pytest.raises(RagtuneError, match="unfinished"):
        load_generator(str(tmp_path / "resumed"))
    resumed = finetune(None, None, runs_dir=tmp_path / "runs", out=tmp_path / "resumed", resume=True)

    assert resumed.metadata["sessions"] == 2 and resumed.metadata["steps"] == straight.metadata["steps"]
    expected, actual = adapter_weights(straight.run_dir), adapter_weights(resumed.run_dir)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert resumed.metadata["best_val_loss"] == pytest.approx(straight.metadata["best_val_loss"], abs=1e-6)


def test_early_stopping_keeps_the_best_checkpoint(tiny_model, qa_file, tmp_path):
    # A learning rate far too high makes validation loss rise after the first steps.
    recipe = lora_recipe(tiny_model, max_steps=40, eval_every=2, patience=2, learning_rate=0.5, warmup=0,
                         precision="fp32")
    result = finetune([parse_dataset_spec(str(qa_file))], recipe, runs_dir=tmp_path / "runs")

    metadata = result.metadata
    assert metadata["stopped_early"] and metadata["steps"] < 40
    evaluations = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()
                   if "eval_loss" in line]
    best = min(evaluations, key=lambda record: record["eval_loss"])
    assert metadata["best_checkpoint_step"] == best["step"]
    assert metadata["best_val_loss"] == pytest.approx(best["eval_loss"])
    assert evaluations[-1]["eval_loss"] > best["eval_loss"] + 0.01  # the last weights are not the best ones
    # ... and the weights the run keeps are the best ones: evaluated afresh, they have the recorded best loss
    assert kept_validation_loss(result.run_dir, tiny_model, recipe) == pytest.approx(best["eval_loss"], abs=1e-5)


def kept_validation_loss(run_dir, tiny_model, recipe) -> float:
    """The validation loss of the run's saved adapter on its validation rows, by a Trainer built here."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from ragtune.data import TrainingCollator
    from ragtune.data.encoding import encode_examples
    from ragtune.data.prepare import read_prepared
    from ragtune.training.label_only_loss import use_label_only_loss
    from ragtune.training.trainer_setup import RowDataset

    tokenizer = AutoTokenizer.from_pretrained(run_dir / runs.ADAPTER_DIR)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    use_label_only_loss(model)
    model = PeftModel.from_pretrained(model, run_dir / runs.ADAPTER_DIR)
    val_rows = encode_examples(read_prepared(run_dir / runs.DATA_DIR).val, tokenizer, recipe.data.max_seq_length)
    args = TrainingArguments(output_dir=str(run_dir.parent / "evaluation"), per_device_eval_batch_size=recipe.batch_size,
                             report_to="none", use_cpu=True, bf16=False, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, eval_dataset=RowDataset(val_rows),
                      data_collator=TrainingCollator(tokenizer.pad_token_id))
    return trainer.evaluate()["eval_loss"]


def test_fine_tuned_run_answers_through_the_generation_engine(tiny_model, qa_file, tmp_path):
    result = finetune([parse_dataset_spec(str(qa_file))], lora_recipe(tiny_model), runs_dir=tmp_path / "runs")
    engine = load_generator(str(result.run_dir))
    messages = [{"role": "user", "content": "What colour is box 3?"}]
    assert isinstance(engine.generate(messages, GenerationConfig(max_new_tokens=8)).text, str)


def test_empty_dataset_after_cleaning_is_an_error_and_leaves_no_finished_run(tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "", "answer": "x"}\n{"question": "q?", "answer": ""}\n', encoding="utf-8")
    with pytest.raises(RagtuneError):
        finetune([parse_dataset_spec(str(bad))], lora_recipe(tiny_model), runs_dir=tmp_path / "runs",
                 out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_max_seq_length_beyond_the_model_context_is_refused(tiny_model, qa_file, tmp_path):
    recipe = lora_recipe(tiny_model, data={"max_seq_length": 4096})
    with pytest.raises(RagtuneError, match="longer than the model's context"):
        finetune([parse_dataset_spec(str(qa_file))], recipe, runs_dir=tmp_path / "runs")


def test_few_shot_dataset_trains_with_a_warning(tiny_model, tmp_path):
    few = write_jsonl(tmp_path / "few.jsonl", qa_rows(8))
    recipe = resolve_recipe("lora", overrides={"model": str(tiny_model), "batch_size": 4})
    result = finetune([parse_dataset_spec(str(few))], recipe, runs_dir=tmp_path / "runs")
    report = json.loads((result.run_dir / "data" / "report.json").read_text())
    assert any("few" in str(warning).lower() for warning in report["warnings"])
    assert result.metadata["epochs"] >= 3


def test_sampled_generation_metrics_on_validation_rows(tiny_model, qa_file, tmp_path):
    result = finetune([parse_dataset_spec(str(qa_file))], lora_recipe(tiny_model, max_steps=2, generation_samples=3),
                      runs_dir=tmp_path / "runs")
    sampled = result.metadata["validation_generation"]
    assert sampled["rows"] == 3 and len(sampled["answers"]) == 3
    assert 0 <= sampled["exact_match"] <= sampled["f1"] <= 1


def test_supervised_tuning_after_continued_pretraining_starts_from_the_cpt_run(tiny_model, qa_file, tmp_path):
    documents = tmp_path / "docs"
    documents.mkdir()
    (documents / "boxes.txt").write_text("Box 3 is black. Box 4 is white. " * 40, encoding="utf-8")
    cpt = finetune([parse_dataset_spec(str(documents))],
                   lora_recipe(tiny_model, objective="cpt", max_steps=3, data={"max_seq_length": 64}),
                   runs_dir=tmp_path / "runs")
    assert cpt.metadata["objective"] == "cpt" and cpt.metadata["tokens_seen"] > 0

    sft = finetune([parse_dataset_spec(str(qa_file))], lora_recipe(str(cpt.run_dir), max_steps=2),
                   runs_dir=tmp_path / "runs")
    assert sft.metadata["base_checkpoint"] == str(cpt.run_dir / "merged")
    assert load_generator(str(sft.run_dir)).generate([{"role": "user", "content": "Box 3?"}],
                                                     GenerationConfig(max_new_tokens=4)).text is not None


def test_rows_removed_while_cleaning_are_named_in_a_warning(tiny_model, tmp_path, caplog):
    rows = qa_rows(12)
    data = tmp_path / "qa.jsonl"
    lines = [json.dumps(row) for row in rows]
    lines.insert(3, '{"question": "broken?", "answer": ')
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = finetune([parse_dataset_spec(str(data))], lora_recipe(tiny_model, max_steps=1),
                      runs_dir=tmp_path / "runs")
    assert result.metadata["status"] == "finished"
    assert f"1 of 13 rows removed while cleaning (invalid JSON: 1): {data}:4 invalid JSON" in caplog.text
    assert "data/report.md" in caplog.text
