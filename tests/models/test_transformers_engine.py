"""The transformers engine on a tiny randomly initialised Llama saved to a local folder."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationConfig
from ragtune.models.prompting import plain_prompt
from ragtune.models.transformers_engine import TransformersEngine

SENTENCES = [
    "the cat sat on the mat and the dog slept",
    "what is the capital of france paris is the capital",
    "user assistant system answer the question using the passages",
    "mars is the fourth planet the moon orbits the earth",
    "User : Assistant : ? . , \n",
]
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
GREEDY = GenerationConfig(max_new_tokens=12)


def chat(question: str) -> list[dict]:
    return [{"role": "system", "content": "answer the question"}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-layer, hidden-32 Llama with a word-level tokenizer, saved like a merged fine-tuned model."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, initializer_range=0.2, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(model_dir):
    return TransformersEngine(model_dir, context_tokens=128, batch_size=4)


def test_plain_prompt_without_chat_template(engine):
    assert not engine.has_chat_template
    assert engine.render(chat("what is mars ?")) == plain_prompt(chat("what is mars ?"))


def test_batch_with_left_padding_equals_one_by_one(engine):
    conversations = [chat("what is the capital of france ?"), chat("mars ?"), chat("the cat sat on the mat")]
    single = [engine.generate(c, GREEDY) for c in conversations]
    batched = engine.generate_batch(conversations, GREEDY)
    assert len({s.prompt_tokens for s in single}) == 3  # different lengths, so the batch is padded
    assert [b.text for b in batched] == [s.text for s in single]
    assert [b.prompt_tokens for b in batched] == [s.prompt_tokens for s in single]
    assert [b.completion_tokens for b in batched] == [s.completion_tokens for s in single]
    assert all(s.text for s in single)


def test_token_counts(engine):
    messages = chat("the moon orbits the earth")
    result = engine.generate(messages, GREEDY)
    assert result.prompt_tokens == engine.count_tokens(engine.render(messages))
    assert 0 < result.completion_tokens <= GREEDY.max_new_tokens
    assert result.finish_reason in {"stop", "length"} and result.seconds > 0
    assert engine.count_tokens("the cat sat") == 3


def test_stream_joins_to_the_generated_text(engine):
    messages = chat("what is the capital of france ?")
    assert "".join(engine.stream(messages, GREEDY)) == engine.generate(messages, GREEDY).text


def test_a_stream_closed_early_stops_the_model(engine):
    before = threading.active_count()
    pieces = engine.stream(chat("what is the capital of france ?"), GenerationConfig(max_new_tokens=2000))
    next(pieces)
    started = time.perf_counter()
    pieces.close()  # a client that left: the generating thread must end now, not after 2000 tokens
    assert threading.active_count() == before and time.perf_counter() - started < 5


def test_stop_strings_cut_the_answer(engine):
    messages = chat("the cat sat on the mat")
    full = engine.generate(messages, GenerationConfig(max_new_tokens=20)).text
    word = full.split()[1]
    stopped = engine.generate(messages, GenerationConfig(max_new_tokens=20, stop=[word]))
    assert word not in stopped.text and full.startswith(stopped.text)
    assert stopped.finish_reason == "stop"
    assert "".join(engine.stream(messages, GenerationConfig(max_new_tokens=20, stop=[word]))) == stopped.text


def test_chat_template_is_used_when_present(model_dir):
    engine = TransformersEngine(model_dir)
    engine.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} \n{% endfor %}"
        "{% if add_generation_prompt %}assistant :{% endif %}")
    assert engine.render(chat("mars ?")) == "system : answer the question \nuser : mars ? \nassistant :"
    assert engine.generate(chat("mars ?"), GREEDY).completion_tokens > 0


def test_prompt_longer_than_the_context(engine):
    with pytest.raises(RagtuneError, match="context window"):
        engine.generate(chat("the cat " * 100), GREEDY)


def test_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RagtuneError, match="cannot load a Hugging Face model"):
        TransformersEngine(tmp_path)


def test_openai_penalties_count_only_generated_tokens():
    from ragtune.models.transformers_engine import _OpenAIPenalties

    scores = torch.zeros(1, 6)
    ids = torch.tensor([[5, 5, 1, 1, 1, 2]])  # prompt: the first two tokens
    adjusted = _OpenAIPenalties(frequency=0.5, presence=1.0, prompt_length=2)(ids, scores)
    assert adjusted.tolist() == [[0.0, -2.5, -1.5, 0.0, 0.0, 0.0]]


def test_a_repetition_penalty_changes_greedy_decoding(engine):
    messages = chat("the cat sat on the mat")
    plain = engine.generate(messages, GenerationConfig(max_new_tokens=30))
    penalised = engine.generate(messages, GenerationConfig(max_new_tokens=30, repetition_penalty=2.0))
    assert penalised.text != plain.text
