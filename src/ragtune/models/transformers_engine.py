"""An engine for local Hugging Face model folders (e.g. fine-tuned, merged models), with transformers on CPU."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from threading import Event, Thread
from typing import Iterator

os.environ["HF_HUB_OFFLINE"] = "1"  # models load from local folders only

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.utils import logging as hf_logging  # noqa: E402

from ragtune.errors import RagtuneError  # noqa: E402
from ragtune.models.base import Generation, GenerationConfig, Message, continuation_tokens  # noqa: E402
from ragtune.models.prompting import PLAIN_STOPS, plain_prompt  # noqa: E402


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text before the first listed stop string found in it, and whether one was found."""
    hits = [stop for stop in stops if stop in text]
    return (text[: text.index(hits[0])], True) if hits else (text, False)


def _partial_stop_length(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that could be the start of a stop string."""
    return max((i for stop in stops for i in range(1, len(stop)) if text.endswith(stop[:i])), default=0)


class _StopOnText(StoppingCriteria):
    """Ends each row once its decoded answer contains a stop string (works with any tokenizer)."""

    def __init__(self, tokenizer, stops: list[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, stops, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        answers = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        return torch.tensor([_cut_at_stop(answer, self.stops)[1] for answer in answers], device=input_ids.device)


class _OpenAIPenalties(LogitsProcessor):
    """OpenAI's frequency and presence penalties over the tokens generated so far (the prompt is not counted)."""

    def __init__(self, frequency: float, presence: float, prompt_length: int):
        self.frequency, self.presence, self.prompt_length = frequency, presence, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class _StopOnRequest(StoppingCriteria):
    """Ends generation once `event` is set (the reader of a stream stopped reading)."""

    def __init__(self, event: Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


class TransformersEngine:
    """GenerationEngine for a local folder with config.json, weights and tokenizer files."""

    def __init__(self, model_dir: str | Path, *, name: str | None = None, context_tokens: int = 2048,
                 batch_size: int = 8, dtype: torch.dtype = torch.float32, adapter_dir: str | Path | None = None):
        self.name = name or Path(model_dir).name
        self.context_tokens = context_tokens
        self.batch_size = batch_size
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
            if adapter_dir is not None:  # a PEFT adapter over the base model (e.g. prefix or prompt tuning)
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, adapter_dir)
        except (OSError, ValueError) as exc:
            raise RagtuneError(f"cannot load a Hugging Face model from {model_dir}: {exc}",
                               "the folder needs config.json, weights and tokenizer files") from exc
        self.model.eval()
        base_model = self.model.get_base_model() if adapter_dir is not None else self.model
        # Models that can compute logits for the last positions only spare scoring a vocabulary-wide row per token.
        self._computes_last_logits_only = "logits_to_keep" in inspect.signature(base_model.forward).parameters
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self._end_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.pad_token_id}

    @property
    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def render(self, messages: list[Message]) -> str:
        """The prompt text the model sees for `messages`."""
        if self.has_chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return plain_prompt(messages)

    def _stops(self, config: GenerationConfig) -> list[str]:
        return ([] if self.has_chat_template else list(PLAIN_STOPS)) + list(config.stop)

    def _encode(self, conversations: list[list[Message]]):
        # A chat template writes its own special tokens; the plain template needs the model's BOS.
        encoded = self.tokenizer([self.render(m) for m in conversations], return_tensors="pt", padding=True,
                                 add_special_tokens=not self.has_chat_template)
        longest = int(encoded["attention_mask"].sum(dim=1).max())
        if longest >= self.context_tokens:
            raise RagtuneError(f"prompt is {longest} tokens but the context window is {self.context_tokens}",
                               "retrieve fewer or shorter passages, or raise generation.context_tokens")
        return encoded

    def _generate_kwargs(self, config: GenerationConfig, prompt_length: int) -> dict:
        kwargs = {"max_new_tokens": config.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if config.temperature > 0:
            torch.manual_seed(config.seed)
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        stops = self._stops(config)
        if stops:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnText(self.tokenizer, stops, prompt_length)])
        if config.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = config.repetition_penalty
        if config.frequency_penalty or config.presence_penalty:
            kwargs["logits_processor"] = LogitsProcessorList([_OpenAIPenalties(
                config.frequency_penalty, config.presence_penalty, prompt_length)])
        return kwargs

    def generate(self, messages: list[Message], config: GenerationConfig) -> Generation:
        """Answer one conversation (greedy when temperature is 0)."""
        return self.generate_batch([messages], config)[0]

    def generate_batch(self, conversations: list[list[Message]], config: GenerationConfig) -> list[Generation]:
        """Answer conversations in left-padded batches of `batch_size`.

        Each Generation's `seconds` is the time from the start of the call until its batch finished.
        """
        start, results = time.perf_counter(), []
        for first in range(0, len(conversations), self.batch_size):
            encoded = self._encode(conversations[first: first + self.batch_size])
            prompt_length = encoded["input_ids"].shape[1]
            with torch.inference_mode():
                output = self.model.generate(**encoded, **self._generate_kwargs(config, prompt_length))
            seconds = time.perf_counter() - start
            new_tokens = output[:, prompt_length:].tolist()
            for row, tokens in enumerate(new_tokens):
                ended = next((i for i, token in enumerate(tokens) if token in self._end_ids), None)
                tokens = tokens if ended is None else tokens[:ended]
                text, stopped = _cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                             self._stops(config))
                results.append(Generation(
                    text=text,
                    prompt_tokens=int(encoded["attention_mask"][row].sum()),
                    completion_tokens=len(tokens),
                    seconds=seconds,
                    finish_reason="stop" if stopped or ended is not None else "length",
                ))
        return results

    def stream(self, messages: list[Message], config: GenerationConfig) -> Iterator[str]:
        """Yield text pieces as they are decoded, holding back anything that may begin a stop string."""
        stops = self._stops(config)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        encoded = self._encode([messages])
        kwargs = {**encoded, **self._generate_kwargs(config, encoded["input_ids"].shape[1]), "streamer": streamer}
        halt = Event()  # a reader that stops early (a stop string, a client gone) must not leave the model busy
        kwargs["stopping_criteria"] = StoppingCriteriaList([*kwargs.get("stopping_criteria", []),
                                                           _StopOnRequest(halt)])
        failures: list[Exception] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except Exception as exc:  # surfaced in the caller's thread below
                failures.append(exc)
                streamer.end()

        worker = Thread(target=work, daemon=True)
        worker.start()
        text, sent = "", 0
        try:
            for piece in streamer:
                text += piece
                visible, stopped = _cut_at_stop(text, stops)
                if stopped:
                    break
                visible = visible[: len(visible) - _partial_stop_length(visible, stops)]
                if len(visible) > sent:
                    yield visible[sent:]
                    sent = len(visible)
        finally:
            halt.set()
            worker.join()
        if failures:
            raise RagtuneError(f"{self.name} failed while generating: {failures[0]}") from failures[0]
        final, _ = _cut_at_stop(text, stops)
        if len(final) > sent:
            yield final[sent:]

    def count_tokens(self, text: str) -> int:
        """Number of tokens the model sees for `text` (no special tokens)."""
        return len(self._tokenize(text, starts_prompt=False))

    def _tokenize(self, text: str, *, starts_prompt: bool) -> list[int]:
        # A chat template writes its own special tokens; the plain template needs the model's BOS.
        return self.tokenizer(text, add_special_tokens=starts_prompt and not self.has_chat_template)["input_ids"]

    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log-probability of each continuation's tokens after the rendered prompt.

        Prompt + continuation sequences run in right-padded batches of `batch_size`, one forward pass each.
        """
        prompt_text = self.render(messages)
        prompt = self._tokenize(prompt_text, starts_prompt=True)
        sequences = [prompt + continuation_tokens(prompt, self._tokenize(prompt_text + text, starts_prompt=True),
                                                  self._tokenize(text, starts_prompt=False))
                     for text in continuations]
        longest = max((len(sequence) for sequence in sequences), default=0)
        if longest > self.context_tokens:
            raise RagtuneError(f"prompt and continuation are {longest} tokens but the context window is "
                               f"{self.context_tokens}", "shorten the question or choices, or raise context_tokens")
        scores = []
        for first in range(0, len(sequences), self.batch_size):
            scores += self._score_batch(sequences[first: first + self.batch_size], len(prompt))
        return scores

    def _score_batch(self, sequences: list[list[int]], prompt_length: int) -> list[float]:
        width = max(len(sequence) for sequence in sequences)
        input_ids = torch.tensor([s + [self.tokenizer.pad_token_id] * (width - len(s)) for s in sequences])
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        # Position i predicts token i + 1, so the continuation's tokens are predicted from prompt_length - 1 on.
        needed = width - prompt_length + 1
        kwargs = {"logits_to_keep": needed} if self._computes_last_logits_only else {}
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        # The last positions are the tokens' (prompt tuning puts its virtual tokens first).
        predicted = logits[:, -needed:-1].float().log_softmax(dim=-1)
        continuation = input_ids[:, prompt_length:]
        token_log_probs = predicted.gather(-1, continuation.unsqueeze(-1)).squeeze(-1)
        return (token_log_probs.double() * attention_mask[:, prompt_length:]).sum(dim=1).tolist()
