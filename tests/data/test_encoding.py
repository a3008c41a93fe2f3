"""Token encoding: prompt masking on chat and plain templates, CPT blocks, packing, and the collator, including
that a packed row gives the same logits as its segments run one by one."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from ragtune.data import Example, TrainingCollator, encode_examples, encode_texts, pack_sequences, token_length
from ragtune.errors import RagtuneError
from ragtune.models.prompting import plain_prompt
from ragtune.prompts import build_messages

IGNORE = -100


def qa_example(question="What is the capital of France?", answer="Paris is the capital.") -> Example:
    return Example("qa-1", messages=build_messages(question, []) + [{"role": "assistant", "content": answer}],
                   origin="qa.jsonl:1", question=question, answer=answer)


def trained_runs(tokenizer, row: dict) -> list[str]:
    """The decoded runs of consecutive trained tokens."""
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label == IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return [tokenizer.decode(run) for run in runs + ([current] if current else [])]


def test_chat_template_trains_only_the_answer_and_its_end_of_turn(chat_tokenizer):
    example = qa_example()
    (row,) = encode_examples([example], chat_tokenizer, max_seq_length=512)
    assert trained_runs(chat_tokenizer, row) == ["Paris is the capital.<|im_end|>"]
    first_trained = next(i for i, label in enumerate(row["labels"]) if label != IGNORE)
    inference_prompt = chat_tokenizer.apply_chat_template(example.messages[:-1], tokenize=False,
                                                          add_generation_prompt=True)
    assert chat_tokenizer.decode(row["input_ids"][:first_trained]) == inference_prompt
    assert token_length(example, chat_tokenizer) == len(row["input_ids"])


def test_every_assistant_turn_of_a_conversation_is_trained(chat_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"},
                {"role": "assistant", "content": "In France."}, {"role": "user", "content": "And Mars?"},
                {"role": "assistant", "content": "The fourth planet."}]
    (row,) = encode_examples([Example("chat", messages=messages, origin="chat.jsonl:1")], chat_tokenizer, 512)
    assert trained_runs(chat_tokenizer, row) == ["In France.<|im_end|>", "The fourth planet.<|im_end|>"]


def test_plain_template_for_a_tokenizer_without_chat_template(plain_tokenizer):
    example = qa_example()
    (row,) = encode_examples([example], plain_tokenizer, max_seq_length=512)
    assert plain_tokenizer.decode(row["input_ids"]) == (plain_prompt(example.messages[:-1])
                                                       + " Paris is the capital.<|endoftext|>")
    assert trained_runs(plain_tokenizer, row) == [" Paris is the capital.<|endoftext|>"]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]
    (row,) = encode_examples([Example("chat", messages=messages)], plain_tokenizer, 512)
    assert trained_runs(plain_tokenizer, row) == [" Hello.\n", " Goodbye.<|endoftext|>"]


def test_rows_over_the_limit_are_an_error_naming_the_row(chat_tokenizer):
    with pytest.raises(RagtuneError, match=r"qa\.jsonl:1: \d+ tokens, longer than max_seq_length 20"):
        encode_examples([qa_example()], chat_tokenizer, max_seq_length=20)


def test_cpt_texts_are_concatenated_into_blocks(chat_tokenizer):
    texts = ["the cat sat on the mat and the dog slept.", "mars is the fourth planet.", "paris is the capital."]
    rows = encode_texts([Example(f"t{i}", text=t) for i, t in enumerate(texts)], chat_tokenizer, block_size=16)
    eos = chat_tokenizer.eos_token_id
    expected = [token for text in texts for token in chat_tokenizer(text, add_special_tokens=False)["input_ids"]
                + [eos]]
    assert [token for row in rows for token in row["input_ids"]] == expected
    assert all(len(row["input_ids"]) == 16 for row in rows[:-1]) and 0 < len(rows[-1]["input_ids"]) <= 16
    assert all(row["labels"] == row["input_ids"] for row in rows)
    assert token_length(Example("t", text=texts[0]), chat_tokenizer) == expected.index(eos) + 1


def random_rows(count: int, longest: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        ids = [rng.randrange(3, 300) for _ in range(rng.randint(2, longest))]
        rows.append({"input_ids": ids, "labels": [IGNORE] * (len(ids) // 2) + ids[len(ids) // 2:]})
    return rows


def segments(packed: dict) -> list[tuple[tuple, tuple]]:
    """(input ids, labels) of each segment of a packed row, found where position_ids restart."""
    starts = [i for i, position in enumerate(packed["position_ids"]) if position == 0] + [len(packed["input_ids"])]
    return [(tuple(packed["input_ids"][a:b]), tuple(packed["labels"][a:b])) for a, b in zip(starts, starts[1:])]


def test_packing_keeps_every_token_within_the_limit():
    rows = random_rows(60, longest=40)
    packed = pack_sequences(rows, max_seq_length=64, seed=3)
    assert all(len(row["input_ids"]) <= 64 for row in packed)
    assert len(packed) < len(rows)
    assert sum(len(r["input_ids"]) for r in packed) == sum(len(r["input_ids"]) for r in rows)
    for row in packed:
        assert row["position_ids"] == [p for ids, _ in segments(row) for p in range(len(ids))]
    found = sorted(seg for row in packed for seg in segments(row))
    expected = sorted((tuple(r["input_ids"]), (IGNORE, *r["labels"][1:])) for r in rows)
    assert found == expected  # each row is one segment; its first token is never a label
    assert pack_sequences(rows, 64, seed=3) == packed and pack_sequences(rows, 64, seed=4) != packed
    with pytest.raises(RagtuneError, match="longer than max_seq_length 30"):
        pack_sequences(rows, max_seq_length=30, seed=0)


def test_collator_pads_unpacked_rows_with_an_attention_mask():
    batch = TrainingCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
                                              {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_collator_gives_packed_rows_position_ids_and_no_mask():
    packed = pack_sequences([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]},
                             {"input_ids": [4], "labels": [4]}], max_seq_length=5, seed=0)
    batch = TrainingCollator(pad_token_id=0)(packed)
    assert "attention_mask" not in batch and batch["use_cache"] is False
    assert batch["input_ids"].shape == (2, 5)
    short = int((batch["input_ids"][:, -1] == 0).nonzero()[0])
    assert batch["position_ids"][short].tolist() == [0, 1, 2, 3, 4] and batch["labels"][short].tolist()[1:] == [
        IGNORE] * 4
    with pytest.raises(ValueError, match="mixes packed and unpacked"):
        TrainingCollator(0)([packed[0], {"input_ids": [1], "labels": [1]}])


def test_packed_rows_give_the_logits_of_their_segments_run_separately(tiny_model_dir):
    """Packed segments must not attend to each other: transformers derives a block-diagonal mask from the
    restarting position ids, but only when no KV cache is built (the model's config enables one)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert model.config.use_cache  # the collator, not the config, turns the cache off
    rows = random_rows(7, longest=12, seed=1)
    packed = pack_sequences(rows, max_seq_length=24, seed=0)
    assert any(len(segments(row)) > 1 for row in packed) and len({len(r["input_ids"]) for r in packed}) > 1
    batch = TrainingCollator(pad_token_id=0)(packed)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for b, row in enumerate(packed):
            start = 0
            for ids, _ in segments(row):
                alone = model(torch.tensor([ids])).logits[0]
                torch.testing.assert_close(logits[b, start:start + len(ids)], alone, atol=1e-5, rtol=0)
                start += len(ids)
