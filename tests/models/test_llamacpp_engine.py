"""The default engine on the real packaged SmolLM2 GGUF (loads in about a second)."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationConfig
from ragtune.models.llamacpp_engine import LlamaCppEngine
from ragtune.models.registry import resolve_generator

from logit_checks import llama_logits

pytestmark = pytest.mark.integration

GREEDY = GenerationConfig(max_new_tokens=24)
QUESTIONS = [
    "What is the capital of France?",
    "List three colours of the rainbow.",
    "Passage: The Moon orbits the Earth every 27.3 days.\n\nQuestion: How long is the Moon's orbit?",
    "Write one sentence about cats.",
    "What is two plus two?",
]


def chat(question: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def engine():
    engine = LlamaCppEngine(resolve_generator("smollm2-135m").location, name="smollm2-135m",
                            context_tokens=1024, batch_size=4)
    yield engine
    engine.close()


def test_uses_the_chat_template_from_the_gguf(engine):
    assert engine.has_chat_template
    assert engine.render(chat("Hi")).endswith("<|im_start|>assistant\n")


def test_greedy_generation_is_deterministic(engine):
    first = engine.generate(chat(QUESTIONS[0]), GREEDY)
    engine.generate(chat(QUESTIONS[1]), GREEDY)  # an unrelated request in between changes nothing
    again = engine.generate(chat(QUESTIONS[0]), GREEDY)
    assert first.text.strip() and first.text == again.text
    assert first.completion_tokens == again.completion_tokens


def test_token_counts_and_timing(engine):
    messages = chat(QUESTIONS[2])
    result = engine.generate(messages, GenerationConfig(max_new_tokens=8))
    assert result.prompt_tokens == engine.count_tokens(engine.render(messages))
    assert result.completion_tokens == 8 and result.finish_reason == "length"
    assert result.seconds > 0 and result.tokens_per_second > 0
    assert 1 <= engine.count_tokens("hello world") <= 3


def test_stream_pieces_join_to_the_generated_text(engine):
    messages = chat(QUESTIONS[3])
    pieces = list(engine.stream(messages, GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces) == engine.generate(messages, GREEDY).text


def test_batch_equals_sequential_greedy(engine):
    conversations = [chat(q) for q in QUESTIONS[:3]]
    sequential = [engine.generate(c, GREEDY) for c in conversations]
    batched = engine.generate_batch(conversations, GREEDY)
    assert [b.text for b in batched] == [s.text for s in sequential]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in sequential]
    assert [b.completion_tokens for b in batched] == [s.completion_tokens for s in sequential]
    assert [b.finish_reason for b in batched] == [s.finish_reason for s in sequential]
    assert len({b.text for b in batched}) == 3


def test_batch_refills_slots_and_applies_stop_strings(engine):
    config = GenerationConfig(max_new_tokens=24, stop=[" the", "."])
    conversations = [chat(q) for q in QUESTIONS]  # 5 conversations for 4 slots
    sequential = [engine.generate(c, config) for c in conversations]
    batched = engine.generate_batch(conversations, config)
    assert [(b.text, b.completion_tokens, b.finish_reason) for b in batched] == [
        (s.text, s.completion_tokens, s.finish_reason) for s in sequential]
    assert all(" the" not in b.text and "." not in b.text for b in batched)
    assert any(b.finish_reason == "stop" for b in batched)


def test_prompt_longer_than_the_context_is_a_clear_error(engine):
    with pytest.raises(RagtuneError, match="context window"):
        engine.generate(chat("word " * 2000), GREEDY)


def write_lora_adapter(path, rank: int = 4, scale: float = 0.3) -> None:
    """A random LoRA adapter GGUF on SmolLM2's attention queries (strong enough to change the output)."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in range(30):
        name = f"blk.{layer}.attn_q.weight"
        writer.add_tensor(f"{name}.lora_a", (rng.standard_normal((rank, 576)) * scale).astype(np.float32))
        writer.add_tensor(f"{name}.lora_b", (rng.standard_normal((576, rank)) * scale).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_lora_adapter_applies_to_generation_and_scoring(engine, tmp_path):
    adapter = tmp_path / "adapter.gguf"
    write_lora_adapter(adapter)
    tuned = LlamaCppEngine(resolve_generator("smollm2-135m").location, lora_path=adapter, context_tokens=1024)
    conversations = [chat(q) for q in QUESTIONS[:2]]
    base = [engine.generate(c, GREEDY).text for c in conversations]
    assert [tuned.generate(c, GREEDY).text for c in conversations] != base
    assert [g.text for g in tuned.generate_batch(conversations, GREEDY)] != base

    messages, continuation = conversations[0], "The capital of France is Paris."
    (score,) = tuned.score_continuations(messages, [continuation])
    assert abs(score - engine.score_continuations(messages, [continuation])[0]) > 5  # measured: 13 nats
    # The scoring context applies the adapter as the generation context does: the score matches the
    # tuned model's one-token-at-a-time logits up to llama.cpp's multi-row kernels (measured 0.11 nats a token).
    prompt_text = tuned.render(messages)
    prompt_length = tuned.count_tokens(prompt_text)
    tokens = tuned._llm.tokenize((prompt_text + continuation).encode("utf-8"), add_bos=False, special=True)
    logits = llama_logits(tuned._llm, tokens).astype(np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = sum(log_probs[i - 1, tokens[i]] for i in range(prompt_length, len(tokens)))
    assert abs(score - expected) <= 0.25 * (len(tokens) - prompt_length)
    tuned.close()


def test_unloadable_lora_adapter_is_a_clear_error(tmp_path):
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"not a gguf")
    with pytest.raises(RagtuneError, match="cannot load LoRA adapter"):
        LlamaCppEngine(resolve_generator("smollm2-135m").location, lora_path=adapter, context_tokens=256)


def test_penalties_reach_llama_cpp_and_leave_the_batch_path(engine, monkeypatch):
    seen = []
    create = engine._llm.create_completion
    monkeypatch.setattr(engine._llm, "create_completion", lambda *a, **kw: seen.append(kw) or create(*a, **kw))
    config = GenerationConfig(max_new_tokens=4, repetition_penalty=1.3, frequency_penalty=0.5, presence_penalty=0.2)
    engine.generate(chat("Say hello."), config)
    assert (seen[0]["repeat_penalty"], seen[0]["frequency_penalty"], seen[0]["presence_penalty"]) == (1.3, 0.5, 0.2)
    engine.generate_batch([chat("Say hello."), chat("Say bye.")], config)  # one by one: the batch decoder is greedy
    assert len(seen) == 3
    assert engine.generate(chat("Say hello."), GenerationConfig(max_new_tokens=4)).text  # defaults: no penalty
    assert seen[-1]["repeat_penalty"] == 1.0 and not GenerationConfig().penalised
