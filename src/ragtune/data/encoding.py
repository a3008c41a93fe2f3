"""Token ids and labels for training: chat rows rendered as at inference with only assistant turns trained,
raw text cut into blocks, packing of short rows, and the batch collator."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import torch

from ragtune.data.examples import Example
from ragtune.errors import RagtuneError
from ragtune.models.prompting import plain_prompt

IGNORE = -100  # label of tokens that are not trained on (the loss skips them)


def encode_examples(examples: list[Example], tokenizer, max_seq_length: int) -> list[dict]:
    """`{"input_ids", "labels"}` per chat example; labels are IGNORE outside assistant turns (whose content and
    end-of-turn token are trained). Raises RagtuneError for a row over `max_seq_length` tokens."""
    if not getattr(tokenizer, "is_fast", False):
        raise RagtuneError("prompt masking needs a fast tokenizer (its character offsets locate the answers)",
                           "use a model folder with a tokenizer.json")
    rows = []
    for example in examples:
        text, spans = _render_conversation(example, tokenizer)
        encoded = tokenizer(text, add_special_tokens=not _has_chat_template(tokenizer), return_offsets_mapping=True)
        input_ids = encoded["input_ids"]
        if len(input_ids) > max_seq_length:
            raise RagtuneError(f"{example.origin}: {len(input_ids)} tokens, longer than max_seq_length "
                               f"{max_seq_length}", "prepare the data with `ragtune data prepare` (it removes "
                                                    "such rows) or raise max_seq_length")
        labels = [token if any(start <= offset < end for start, end in spans) else IGNORE
                  for token, (offset, _) in zip(input_ids, encoded["offset_mapping"])]
        rows.append({"input_ids": list(input_ids), "labels": labels})
    return rows


def encode_texts(examples: list[Example], tokenizer, block_size: int) -> list[dict]:
    """CPT rows: every text tokenized (BOS if the model has one, EOS after), concatenated and cut into
    blocks of `block_size` tokens (the last block may be shorter); labels equal the input ids."""
    stream: list[int] = []
    for example in examples:
        stream.extend(_text_ids(example.text, tokenizer))
    return [{"input_ids": stream[i:i + block_size], "labels": stream[i:i + block_size]}
            for i in range(0, len(stream), block_size)]


def token_length(example: Example, tokenizer) -> int:
    """How many tokens an example takes once rendered for training."""
    if not example.messages:
        return len(_text_ids(example.text, tokenizer))
    text, _ = _render_conversation(example, tokenizer)
    return len(tokenizer(text, add_special_tokens=not _has_chat_template(tokenizer))["input_ids"])


def _render_conversation(example: Example, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The training text of a chat example and the character spans of its assistant turns.

    With a chat template the text is the template's rendering, and a turn's span runs from the end of the
    generation prompt before it to its end-of-turn token. Without one, the text is `plain_prompt` + " " +
    answer + EOS, exactly what the engines prompt with and what the model should produce.
    """
    messages = example.messages
    if not messages or messages[-1]["role"] != "assistant":
        raise RagtuneError(f"{example.origin}: a training conversation must end with an assistant message",
                           "raw text rows (cpt) go through encode_texts")
    if _has_chat_template(tokenizer):
        return _render_with_template(example, tokenizer)
    _require_eos(tokenizer)
    text = plain_prompt(messages[:-1]) + " " + messages[-1]["content"] + tokenizer.eos_token
    spans = []
    for i, message in enumerate(messages[:-1]):
        if message["role"] == "assistant":  # rendered as "Assistant: content\n"; "\n" ends the turn
            start = len(plain_prompt(messages[:i]))
            spans.append((start, start + len(f" {message['content']}\n")))
    spans.append((len(plain_prompt(messages[:-1])), len(text)))
    return text, spans


def _render_with_template(example: Example, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    messages = example.messages
    text = _apply_template(example, tokenizer, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _apply_template(example, tokenizer, messages[:i], generation_prompt=True)
        through_turn = _apply_template(example, tokenizer, messages[:i + 1], generation_prompt=False)
        if not (text.startswith(through_turn) and through_turn.startswith(prompt)):
            raise RagtuneError(f"{example.origin}: the chat template renders earlier turns differently once "
                               "later ones follow, so assistant turns cannot be located",
                               "train on single-turn rows, or use a model with a prefix-stable chat template")
        spans.append((len(prompt), len(through_turn.rstrip())))  # content and end-of-turn, not the newline
    return text, spans


def _apply_template(example: Example, tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as exc:  # jinja2 errors, and templates that raise on roles they do not support
        raise RagtuneError(f"{example.origin}: the model's chat template rejected the conversation: {exc}",
                           "check the roles of the messages (some templates have no system role)") from exc


def _has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _require_eos(tokenizer) -> None:
    if tokenizer.eos_token is None:
        raise RagtuneError("the tokenizer has no end-of-sequence token, so the model could not learn to stop",
                           "use a model whose tokenizer defines eos_token")


def _text_ids(text: str, tokenizer) -> list[int]:
    _require_eos(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + ids + [tokenizer.eos_token_id]


def pack_sequences(encoded: list[dict], max_seq_length: int, seed: int) -> list[dict]:
    """Pack encoded rows into rows of at most `max_seq_length` tokens (best-fit decreasing, seeded order).

    Packed rows carry `position_ids` restarting at 0 for every segment, and the first token of each segment
    is not a label, so no segment learns from the one before it.
    """
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)  # ties in length are broken differently with each seed
    order.sort(key=lambda i: len(encoded[i]["input_ids"]), reverse=True)
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, bin index), sorted
    for index in order:
        length = len(encoded[index]["input_ids"])
        if length > max_seq_length:
            raise RagtuneError(f"a row of {length} tokens is longer than max_seq_length {max_seq_length}",
                               "prepare the data with `ragtune data prepare` (it removes such rows)")
        slot = bisect.bisect_left(free, (length, -1))
        if slot < len(free):
            room, bin_index = free.pop(slot)
        else:
            room, bin_index = max_seq_length, len(bins)
            bins.append([])
        bins[bin_index].append(index)
        bisect.insort(free, (room - length, bin_index))
    random.Random(seed).shuffle(bins)
    return [_packed_row([encoded[i] for i in members]) for members in bins]


def _packed_row(segments: list[dict]) -> dict:
    row = {"input_ids": [], "labels": [], "position_ids": []}
    for segment in segments:
        row["input_ids"] += segment["input_ids"]
        row["labels"] += [IGNORE] + segment["labels"][1:]
        row["position_ids"] += range(len(segment["input_ids"]))
    return row


@dataclass
class TrainingCollator:
    """Pads a batch to its longest row (right padding; padding is never a label).

    Unpacked rows get an attention mask. Packed rows (with `position_ids`) get none: from the restarting
    position ids transformers builds a block-diagonal causal mask, so segments never attend to each other
    (padding positions keep counting and join the last segment). That only happens without a KV cache, so
    packed batches also carry `use_cache=False`.
    """

    pad_token_id: int

    def __call__(self, features: list[dict]) -> dict:
        longest = max(len(f["input_ids"]) for f in features)
        packed = "position_ids" in features[0]
        if any(("position_ids" in f) != packed for f in features):
            raise ValueError("a batch mixes packed and unpacked rows")
        batch = {"input_ids": [], "labels": [], "position_ids" if packed else "attention_mask": []}
        for feature in features:
            length = len(feature["input_ids"])
            padding = longest - length
            batch["input_ids"].append(list(feature["input_ids"]) + [self.pad_token_id] * padding)
            batch["labels"].append(list(feature["labels"]) + [IGNORE] * padding)
            if packed:
                last = feature["position_ids"][-1]
                batch["position_ids"].append(list(feature["position_ids"]) + list(range(last + 1, last + 1 + padding)))
            else:
                batch["attention_mask"].append([1] * length + [0] * padding)
        tensors = {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        return {**tensors, "use_cache": False} if packed else tensors
