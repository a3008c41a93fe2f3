"""The generation-engine interface every engine (llama.cpp, OpenAI-compatible, transformers) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class GenerationConfig:
    """Decoding settings; greedy by default so that runs are reproducible."""

    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)


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
