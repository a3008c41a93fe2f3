"""An engine for any OpenAI-compatible `/chat/completions` server (Ollama, vLLM, llama.cpp server, OpenAI)."""

from __future__ import annotations

import json
import os
import time
from typing import Iterator

import httpx

from ragtune.errors import RagtuneError
from ragtune.models.base import Generation, GenerationConfig, Message

CHARS_PER_TOKEN = 4  # rough estimate used only when the server reports no usage


class OpenAIEngine:
    """GenerationEngine that sends conversations to `BASE_URL/chat/completions`.

    The API key comes from `api_key` or the OPENAI_API_KEY environment variable (optional
    for local servers).
    """

    decodes_remotely = True  # the server's own decoding defaults apply (see base.chat_repetition_penalty)

    def __init__(self, model: str, base_url: str, *, name: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = name or f"openai:{model}@{self.base_url}"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _body(self, messages: list[Message], config: GenerationConfig, stream: bool) -> dict:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "seed": config.seed,
            "stream": stream,
        }
        if config.stop:
            body["stop"] = config.stop
        if config.frequency_penalty or config.presence_penalty:
            body.update(frequency_penalty=config.frequency_penalty, presence_penalty=config.presence_penalty)
        if config.repetition_penalty != 1.0:
            body["repetition_penalty"] = config.repetition_penalty  # not OpenAI's; vLLM and llama.cpp's read it
        return body

    def _unreachable(self, exc: httpx.TransportError) -> RagtuneError:
        return RagtuneError(
            f"cannot reach the OpenAI-compatible server at {self.url} ({type(exc).__name__}: {exc})",
            "start the server, or fix the URL in openai:MODEL@BASE_URL (it usually ends in /v1)",
        )

    def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        detail = response.read().decode("utf-8", errors="replace")[:500]
        if response.status_code in (401, 403):
            hint = "set OPENAI_API_KEY to a key the server accepts"
        elif response.status_code == 404:
            hint = f"check the model name '{self.model}' and that the base URL ends in /v1"
        else:
            hint = "check the server's log"
        raise RagtuneError(f"{self.url} answered HTTP {response.status_code}: {detail}", hint)

    def generate(self, messages: list[Message], config: GenerationConfig) -> Generation:
        """Answer one conversation (non-streaming request)."""
        start = time.perf_counter()
        try:
            response = self._client.post(self.url, json=self._body(messages, config, stream=False))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._raise_for_status(response)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RagtuneError(f"{self.url} sent an unexpected answer: {response.text[:300]}",
                               "check that the server speaks the OpenAI chat-completions API") from exc
        usage = data.get("usage") or {}
        prompt_text = "".join(m.get("content", "") for m in messages)
        return Generation(
            text=text,
            prompt_tokens=usage.get("prompt_tokens") or self.count_tokens(prompt_text),
            completion_tokens=usage.get("completion_tokens") or self.count_tokens(text),
            seconds=time.perf_counter() - start,
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def stream(self, messages: list[Message], config: GenerationConfig) -> Iterator[str]:
        """Yield text pieces from the server's server-sent events."""
        try:
            with self._client.stream("POST", self.url, json=self._body(messages, config, stream=True)) as response:
                self._raise_for_status(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[len("data:"):].strip()
                    if payload == "[DONE]":
                        break
                    choices = json.loads(payload).get("choices") or [{}]
                    piece = (choices[0].get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def generate_batch(self, conversations: list[list[Message]], config: GenerationConfig) -> list[Generation]:
        """Answer conversations one request at a time."""
        return [self.generate(messages, config) for messages in conversations]

    def score_continuations(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Not available: chat-completions servers do not return the log-probabilities of given text."""
        raise RagtuneError(
            f"{self.name} cannot score answer choices: multiple-choice scoring needs the log-probabilities "
            "of each choice, which only a local model provides",
            "evaluate a local model (a built-in name, a .gguf file or a Hugging Face folder), "
            "or drop `choices` from the questions to grade generated answers instead",
        )

    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token): the server's tokenizer is not available locally."""
        return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
