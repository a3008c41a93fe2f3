"""Every fine-tuning method on the real packaged SmolLM2: the loss falls, the run answers (`ask --k 0`) through the
engine the README names for it, and that engine's next-token logits on a fixed prompt are the trained model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ragtune.data import parse_dataset_spec
from ragtune.demo import demo_questions
from ragtune.models.llamacpp_engine import LlamaCppEngine
from ragtune.models.loading import load_generator
from ragtune.models.transformers_engine import TransformersEngine
from ragtune.training import runs
from ragtune.training.recipe import resolve_recipe

from logit_checks import differences, llama_logits

pytestmark = pytest.mark.integration

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
# What serves each method (README, "A run"): LoRA as a GGUF adapter over the packaged GGUF, the other weight
# methods as a merged GGUF, prefix and prompt tuning (no weight delta to merge) on transformers.
SERVED_BY = {"lora": "adapter.gguf", "full": "model.gguf", "freeze": "model.gguf", "dora": "model.gguf",
             "ia3": "model.gguf", "prefix": "transformers", "prompt": "transformers"}
# Learning rates high enough that four steps on the same four rows move the model well past llama.cpp's
# quantisation noise, so that "the served logits are the trained model's" can be told from "the base model's".
LEARNING_RATES = {"full": 2e-4, "freeze": 5e-4, "lora": 1e-2, "dora": 1e-2, "ia3": 5e-2, "prefix": 5e-2,
                  "prompt": 1e-1}
# llama.cpp (Q4_1 base + F32 adapter, or a Q8_0 merge, with 8-bit activations) against transformers in float32:
# the limits of tests/training/test_gguf_export.py, measured there on the same model.
TOP1_AGREEMENT, PLAUSIBLE_DIFF = 0.9, 1.0


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from ragtune.project import Project

    root = tmp_path_factory.mktemp("methods")
    opened = Project(root / "project", {"generation": {"max_new_tokens": 8}})
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    rows = [row for row in demo_questions() if len(row["answer"].split()) <= 4][:4]
    path = tmp_path_factory.mktemp("data") / "four.jsonl"
    path.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def trained_next_token_logits(run_dir: Path, metadata: dict, tokens: list[int]) -> np.ndarray:
    """The fine-tuned model in transformers, float32, as training left it: its logits after `tokens`."""
    from transformers import AutoModelForCausalLM

    if (run_dir / runs.MODEL_DIR).is_dir():
        model = AutoModelForCausalLM.from_pretrained(run_dir / runs.MODEL_DIR, dtype=torch.float32)
    else:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(metadata["base_checkpoint"], dtype=torch.float32)
        model = PeftModel.from_pretrained(base, run_dir / runs.ADAPTER_DIR)
    model.eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1:].float().numpy()


def base_next_token_logits(metadata: dict, tokens: list[int]) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(metadata["base_checkpoint"], dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens])).logits[0, -1:].float().numpy()


@pytest.mark.parametrize("method", list(SERVED_BY))
def test_each_method_learns_and_is_served_as_trained(method, project, questions):
    recipe = resolve_recipe(method, overrides={
        "max_steps": 4, "batch_size": 4, "learning_rate": LEARNING_RATES[method], "warmup": 0,
        "scheduler": "constant", "precision": "fp32", "data": {"val_fraction": 0.0, "max_seq_length": 128}})
    result = project.finetune([parse_dataset_spec(str(questions))], recipe)
    losses = [record["loss"] for record in runs_log(result.run_dir) if "loss" in record]
    assert len(losses) == 4 and losses[-1] < losses[0], losses  # the same four rows every step: the loss falls

    answer = project.ask(CHAT[0]["content"], k=0, model=str(result.run_dir))
    assert answer.answer.strip() and answer.passages == []
    engine = load_generator(str(result.run_dir), context_tokens=project.config.generation.context_tokens)
    metadata = result.metadata
    if SERVED_BY[method] == "transformers":
        assert isinstance(engine, TransformersEngine)
        tokens = engine._encode([CHAT])["input_ids"][0].tolist()
        with torch.inference_mode():
            served = engine.model(input_ids=torch.tensor([tokens])).logits[0, -1:].float().numpy()
        np.testing.assert_allclose(served, trained_next_token_logits(result.run_dir, metadata, tokens), atol=1e-4)
        moved = differences(base_next_token_logits(metadata, tokens), served)[1]
    else:
        assert isinstance(engine, LlamaCppEngine) and metadata["llamacpp_file"] == SERVED_BY[method]
        tokens = engine._llm.tokenize(engine.render(CHAT).encode("utf-8"), add_bos=False, special=True)
        served = llama_logits(engine._llm, tokens)[-1:]
        trained = trained_next_token_logits(result.run_dir, metadata, tokens)
        top1, plausible, _ = differences(served, trained)
        assert top1 >= TOP1_AGREEMENT and plausible <= PLAUSIBLE_DIFF, (top1, plausible)
        moved = differences(base_next_token_logits(metadata, tokens), trained)[1]
        assert moved > plausible, (moved, plausible)  # closer to the trained model than the base model is
    assert moved > 0.05, f"{method}: four steps did not move the model ({moved})"


def runs_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / runs.LOG_FILE).read_text(encoding="utf-8").splitlines()]
