"""The default engine: llama-cpp-python on a GGUF file, CPU only.

Single requests go through `Llama.create_completion` on the chat-templated prompt.
`generate_batch` (greedy) runs many conversations at once on a second llama.cpp context
that shares the weights: every `llama_decode` call advances all active sequences by one
token, and a finished sequence's slot is refilled with the next waiting prompt.
`score_continuations` computes log-likelihoods on a third context of the same weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ragtune.errors import RagtuneError
from ragtune.models.base import Generation, GenerationConfig, Message, continuation_tokens
from ragtune.models.prompting import PLAIN_STOPS, plain_prompt

try:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
except ImportError as exc:  # pragma: no cover - llama-cpp-python is a declared dependency
    raise RagtuneError(
        "llama-cpp-python is not installed; it runs the GGUF models", "pip install llama-cpp-python"
    ) from exc


def available_cpus() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class _Prompt:
    tokens: list[int]
    stops: list[str]


class LlamaCppEngine:
    """GenerationEngine for a GGUF file, optionally with a LoRA adapter GGUF; one request at a time.

    Conversations are rendered with the chat template stored in the GGUF when it has one,
    with `prompting.plain_prompt` otherwise.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        context_tokens: int = 2048,
        lora_path: str | Path | None = None,
        batch_size: int = 8,
        n_threads: int | None = None,
    ):
        self.name = name or Path(model_path).stem
        self.batch_size = batch_size
        self.lora_path = str(lora_path) if lora_path else None
        threads = n_threads or available_cpus()
        log = io.StringIO()  # llama.cpp's load messages, shown only when loading fails
        try:
            with contextlib.redirect_stderr(log):
                self._llm = llama_cpp.Llama(
                    model_path=str(model_path),
                    n_ctx=context_tokens,
                    n_threads=threads,
                    n_threads_batch=threads,
                    seed=0,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise RagtuneError(f"cannot load GGUF model {model_path}: {exc}",
                               "check that the file is a complete GGUF model file") from exc
        # The adapter is loaded here rather than by Llama(lora_path=...), which does not notice a failed load.
        self._adapter = _load_lora(self._llm, self.lora_path) if self.lora_path else None
        if self._adapter:
            _attach_lora(self._llm.ctx, self._adapter, self.lora_path)
        self.context_tokens = self._llm.n_ctx()
        template = self._llm.metadata.get("tokenizer.chat_template")
        self._formatter = (
            Jinja2ChatFormatter(template, eos_token=self._token_text(self._llm.token_eos()),
                                bos_token=self._token_text(self._llm.token_bos()))
            if template
            else None
        )
        self._batcher: _BatchDecoder | None = None
        self._scorer: _ContinuationScorer | None = None

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    def _token_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore") if token >= 0 else ""

    def render(self, messages: list[Message]) -> str:
        """The prompt text the model sees for `messages`."""
        return self._template(messages)[0]

    def _template(self, messages: list[Message]) -> tuple[str, list[str]]:
        if not self._formatter:
            return plain_prompt(messages), list(PLAIN_STOPS)
        try:
            rendered = self._formatter(messages=messages)
        except Exception as exc:  # jinja2 errors, and templates that raise on unsupported roles
            raise RagtuneError(f"the chat template of {self.name} rejected the conversation: {exc}",
                               "check the message roles (system/user/assistant) and their order") from exc
        return rendered.prompt, [stop for stop in rendered.stop if stop]

    def _tokenize(self, text: str, *, starts_prompt: bool) -> list[int]:
        # A chat template writes its own special tokens; the plain template needs the model's BOS (if any).
        return self._llm.tokenize(text.encode("utf-8"), add_bos=starts_prompt and not self._formatter, special=True)

    def _prompt(self, messages: list[Message], config: GenerationConfig) -> _Prompt:
        text, stops = self._template(messages)
        tokens = self._tokenize(text, starts_prompt=True)
        if len(tokens) >= self.context_tokens:
            raise RagtuneError(
                f"prompt is {len(tokens)} tokens but the context window of {self.name} is {self.context_tokens}",
                "retrieve fewer or shorter passages, or raise generation.context_tokens",
            )
        return _Prompt(tokens, stops + list(config.stop))

    def _completion(self, prompt: _Prompt, config: GenerationConfig, stream: bool):
        self._llm.reset()  # no KV-prefix reuse: a prompt's output never depends on the previous request
        return self._llm.create_completion(
            prompt.tokens,
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
            stop=prompt.stops,
            stream=stream,
            repeat_penalty=config.repetition_penalty,
            frequency_penalty=config.frequency_penalty,
            presence_penalty=config.presence_penalty,
        )

    def generate(self, messages: list[Message], config: GenerationConfig) -> Generation:
        """Answer one conversation (greedy when temperature is 0)."""
        prompt = self._prompt(messages, config)
        start = time.perf_counter()
        result = self._completion(prompt, config, stream=False)
        choice, usage = result["choices"][0], result["usage"]
        return Generation(
            text=choice["text"],
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            seconds=time.perf_counter() - start,
            finish_reason=choice["finish_reason"] or "stop",
        )

    def stream(self, messages: list[Message], config: GenerationConfig) -> Iterator[str]:
        """Yield the answer's text pieces as they are decoded."""
        prompt = self._prompt(messages, config)
        for chunk in self._completion(prompt, config, stream=True):
            piece = chunk["choices"][0]["text"]
            if piece:
                yield piece

    def generate_batch(self, conversations: list[list[Message]], config: GenerationConfig) -> list[Generation]:
        """Answer many conversations; greedy decoding is batched, sampled or penalised decoding one by one.

        Batched outputs equal `generate`'s greedy outputs for SmolLM2; for other weight types see
        _BatchDecoder. Each Generation's `seconds` is the time from the start of the call until
        that conversation finished.
        """
        if config.temperature > 0 or config.penalised or len(conversations) < 2 or self.batch_size < 2:
            return [self.generate(messages, config) for messages in conversations]
        prompts = [self._prompt(messages, config) for messages in conversations]
        if self._batcher is None:
            batcher = _BatchDecoder(self._llm, self.batch_size, self.context_tokens)
            if self._adapter:
                _attach_lora(batcher.ctx, self._adapter, self.lora_path)
            self._batcher = batcher
        return self._batcher.run(prompts, config.max_new_tokens)

    def count_tokens(self, text: str) -> int:
        """Number of tokens the model sees for `text` (no BOS)."""
        return len(self._tokenize(text, starts_prompt=False))

    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log-probability of each continuation's tokens after the rendered prompt (adapter included).

        The prompt is decoded once and its cache reused for every continuation.
        """
        prompt_text = self.render(messages)
        prompt = self._tokenize(prompt_text, starts_prompt=True)
        scored = [continuation_tokens(prompt, self._tokenize(prompt_text + text, starts_prompt=True),
                                      self._tokenize(text, starts_prompt=False)) for text in continuations]
        longest = len(prompt) + max((len(tokens) for tokens in scored), default=0)
        if longest > self.context_tokens:
            raise RagtuneError(
                f"prompt and continuation are {longest} tokens but the context window of {self.name} "
                f"is {self.context_tokens}", "shorten the question or choices, or raise generation.context_tokens")
        if self._scorer is None:
            scorer = _ContinuationScorer(self._llm)
            if self._adapter:
                _attach_lora(scorer.ctx, self._adapter, self.lora_path)
            self._scorer = scorer
        return self._scorer.score(prompt, scored)

    def close(self) -> None:
        """Free the llama.cpp contexts and weights."""
        for helper in (self._batcher, self._scorer):
            if helper is not None:
                helper.close()
        self._batcher = self._scorer = None
        self._llm.close()


@dataclass
class _Sequence:
    index: int  # position in the caller's list
    slot: int  # llama.cpp sequence id
    prompt: _Prompt
    max_tokens: int
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    finish_reason: str | None = None

    @property
    def n_past(self) -> int:
        return len(self.prompt.tokens) + len(self.tokens)


class _BatchDecoder:
    """Greedy continuous batching over `slots` sequences on a second context sharing the model's weights.

    Each prompt is prefilled alone with the single-request context's settings (flash attention
    off, same n_batch), so its logits are the ones `create_completion` computes. A decode step
    multiplies one row per active sequence; whether that equals one-row decoding bit for bit
    depends on llama.cpp's kernel for the weight type: identical for SmolLM2 (Q4_1) at 1-8 rows,
    while for Gemma 3 Q4_K_M (repacked Q4_K, Q5_0) and for F32 LoRA tensors the multi-row
    kernels give slightly different logits (up to 0.8 on a scale of 23 measured on Gemma), so a
    greedy continuation can diverge. Output is deterministic for a given list of prompts and
    slot count.
    """

    def __init__(self, llm: llama_cpp.Llama, slots: int, context_tokens: int):
        self._llm = llm
        self.slots = slots
        self.context_tokens = context_tokens
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llm.n_vocab()
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = slots * context_tokens
        params.n_seq_max = slots
        params.kv_unified = False  # one KV stream per sequence: each attends only to its own tokens
        self._n_batch = params.n_batch
        with contextlib.redirect_stderr(io.StringIO()):
            self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RagtuneError(f"llama.cpp could not create a {slots}-sequence context", "lower the batch size")
        self._batch = llama_cpp.llama_batch_init(max(self._n_batch, slots), 0, 1)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        # `llm` is held by the finalizer so that the weights outlive this context.
        self._finalizer = weakref.finalize(self, _free, llm, self.ctx, self._batch)

    def close(self) -> None:
        self._finalizer()

    def run(self, prompts: list[_Prompt], max_new_tokens: int) -> list[Generation]:
        start = time.perf_counter()
        waiting = deque(enumerate(prompts))
        active: dict[int, _Sequence] = {}
        results: list[Generation | None] = [None] * len(prompts)
        while waiting or active:
            for slot in range(self.slots):
                if slot not in active and waiting:
                    index, prompt = waiting.popleft()
                    budget = min(max_new_tokens, self.context_tokens - len(prompt.tokens))
                    active[slot] = _Sequence(index, slot, prompt, budget)
                    self._prefill(active[slot])
            running = [seq for seq in active.values() if not seq.finish_reason]
            if running:
                self._step(running)
            for seq in [seq for seq in active.values() if seq.finish_reason]:
                results[seq.index] = self._retire(seq, time.perf_counter() - start)
                del active[seq.slot]
        return results

    def _prefill(self, seq: _Sequence) -> None:
        tokens = seq.prompt.tokens
        for begin in range(0, len(tokens), self._n_batch):
            chunk = range(begin, min(begin + self._n_batch, len(tokens)))
            self._decode([(tokens[pos], pos, seq.slot, pos == len(tokens) - 1) for pos in chunk])
        self._accept(seq, self._argmax(-1))

    def _step(self, sequences: list[_Sequence]) -> None:
        self._decode([(seq.tokens[-1], seq.n_past - 1, seq.slot, True) for seq in sequences])
        for row, seq in enumerate(sequences):
            self._accept(seq, self._argmax(row))

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, slot, wants_logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.logits[i] = token, pos, wants_logits
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, slot
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RagtuneError(f"llama_decode failed with status {status}", "lower the batch size or context")

    def _argmax(self, row: int) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row), shape=(self._n_vocab,))
        return int(np.argmax(logits))

    def _accept(self, seq: _Sequence, token: int) -> None:
        """Append a sampled token; same stop rules as create_completion (end-of-generation, stop text, length)."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            seq.finish_reason = "stop"
            return
        seq.tokens.append(token)
        seq.text += self._llm.detokenize([token])
        hits = [stop.encode("utf-8") for stop in seq.prompt.stops if stop.encode("utf-8") in seq.text]
        if hits:
            seq.text = seq.text[: seq.text.index(hits[0])]
            seq.finish_reason = "stop"
        elif len(seq.tokens) >= seq.max_tokens:
            seq.finish_reason = "length"

    def _retire(self, seq: _Sequence, seconds: float) -> Generation:
        llama_cpp.llama_memory_seq_rm(self._memory, seq.slot, -1, -1)
        return Generation(
            text=seq.text.decode("utf-8", errors="ignore"),
            prompt_tokens=len(seq.prompt.tokens),
            completion_tokens=len(seq.tokens),
            seconds=seconds,
            finish_reason=seq.finish_reason,
        )


class _ContinuationScorer:
    """Log-likelihoods of token continuations after one prompt, on a context sharing the model's weights.

    All but the prompt's last token are decoded once; each continuation is then decoded from the
    prompt's last token on, with logits at every position, and removed from the cache afterwards.
    Multi-token batches use llama.cpp's multi-row kernels, so the log-probabilities can differ
    slightly from one-token-at-a-time decoding (see _BatchDecoder).
    """

    def __init__(self, llm: llama_cpp.Llama):
        self._n_vocab = llm.n_vocab()
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        self._n_batch = params.n_batch
        with contextlib.redirect_stderr(io.StringIO()):
            self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RagtuneError("llama.cpp could not create a context for scoring", "lower the context size")
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._finalizer = weakref.finalize(self, _free, llm, self.ctx, self._batch)

    def close(self) -> None:
        self._finalizer()

    def score(self, prompt: list[int], continuations: list[list[int]]) -> list[float]:
        last = len(prompt) - 1
        llama_cpp.llama_memory_clear(self._memory, True)
        self._decode(prompt[:last], 0)
        scores = []
        for tokens in continuations:
            scores.append(self._decode([prompt[last], *tokens[:-1]], last, tokens) if tokens else 0.0)
            if not llama_cpp.llama_memory_seq_rm(self._memory, 0, last, -1):
                raise RagtuneError("llama.cpp cannot drop a continuation from this model's cache",
                                   "score continuations with a transformer model")
        return scores

    def _decode(self, tokens: list[int], first_position: int, next_tokens: list[int] | None = None) -> float:
        """Decode `tokens` from `first_position`; the summed log-probability of next_tokens[i] after tokens[i]."""
        batch, total = self._batch, 0.0
        for begin in range(0, len(tokens), self._n_batch):
            chunk = range(begin, min(begin + self._n_batch, len(tokens)))
            batch.n_tokens = len(chunk)
            for row, i in enumerate(chunk):
                batch.token[row], batch.pos[row], batch.logits[row] = tokens[i], first_position + i, bool(next_tokens)
                batch.n_seq_id[row], batch.seq_id[row][0] = 1, 0
            status = llama_cpp.llama_decode(self.ctx, batch)
            if status != 0:
                raise RagtuneError(f"llama_decode failed with status {status}", "lower the context size")
            for row, i in enumerate(chunk if next_tokens else ()):
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, row), shape=(self._n_vocab,))
                total += _log_softmax_at(logits.astype(np.float64), next_tokens[i])
        return total


def _log_softmax_at(logits: np.ndarray, token: int) -> float:
    peak = logits.max()
    return float(logits[token] - peak - np.log(np.exp(logits - peak).sum()))


def _free(llm: llama_cpp.Llama, ctx, batch) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)


def _load_lora(llm: llama_cpp.Llama, path: str):
    """Load a LoRA adapter GGUF for `llm`'s model (freed together with the model)."""
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        adapter = llama_cpp.llama_adapter_lora_init(llm.model, path.encode("utf-8"))
    if not adapter:
        raise RagtuneError(f"cannot load LoRA adapter {path}: {log.getvalue().strip()[-300:]}",
                           "check that it is a GGUF LoRA adapter made for this base model")
    return adapter


def _attach_lora(ctx, adapter, path: str) -> None:
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
        raise RagtuneError(f"cannot apply LoRA adapter {path}", "check that it was made for this base model")
