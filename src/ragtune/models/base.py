"""The generation-engine interface every engine (llama.cpp, OpenAI-compatible, transformers) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

from ragtune.config import CHAT_REPETITION_PENALTY

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class GenerationConfig:
    """Decoding settings; greedy by default so that runs are reproducible."""

    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    # Against loops ("the virus ... the virus ..."), which small greedy models fall into. repetition_penalty
    # divides the logit of every token already in the text (1: off; llama.cpp's repeat_penalty, transformers'
    # repetition_penalty); frequency/presence penalties are OpenAI's: subtracted per earlier occurrence / once.
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    @property
    def penalised(self) -> bool:
        return (self.repetition_penalty, self.frequency_penalty, self.presence_penalty) != (1.0, 0.0, 0.0)


def chat_repetition_penalty(engine) -> float:
    """The repetition penalty a chat answer gets when its request sets none: CHAT_REPETITION_PENALTY for the engines
    ragtune runs itself; none (1) for an OpenAI-compatible server, which decodes as it is configured and may refuse
    the field (OpenAI's API does)."""
    return 1.0 if getattr(engine, "decodes_remotely", False) else CHAT_REPETITION_PENALTY


@dataclass
class Generation:
    """A finished generation with the counts needed for cost and speed reports."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str = "stop"

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


class GenerationEngine(Protocol):
    """Generates chat completions from one loaded model."""

    name: str

    def generate(self, messages: list[Message], config: GenerationConfig) -> Generation:
        """Answer one conversation."""
        ...

    def stream(self, messages: list[Message], config: GenerationConfig) -> Iterator[str]:
        """Yield the answer's text pieces as they are produced."""
        ...

    def generate_batch(self, conversations: list[list[Message]], config: GenerationConfig) -> list[Generation]:
        """Answer many conversations, batched where the engine can (used by evaluation)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens the model sees for `text`."""
        ...

    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Summed log-probability (natural log) of each continuation's tokens as the assistant's reply.

        The continuation follows the prompt `render(messages)` exactly as generation tokenises it
        (assistant turn opened); see `continuation_tokens` for the tokens scored. An empty
        continuation scores 0.0. Engines without log-probabilities raise RagtuneError.
        """
        ...


def continuation_tokens(prompt: list[int], joined: list[int], alone: list[int]) -> list[int]:
    """The tokens to score after `prompt` for a continuation.

    `joined` is the tokenisation of prompt text + continuation text, `alone` that of the
    continuation by itself. When `joined` starts with the prompt's tokens, the rest of it is the
    continuation as the tokenizer splits it in context (e.g. a leading space merged into a word);
    when a token merges across the boundary, `alone` is used, so that the condition is always the
    prompt exactly as generation sees it.
    """
    return joined[len(prompt):] if joined[: len(prompt)] == prompt else alone
