"""The RAG answer: take the query from the conversation, retrieve, put the numbered passages before the question,
generate (whole, or streamed as events), and map the answer back to the passages and sources it rests on."""

from __future__ import annotations

import importlib
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from bm25s.stopwords import STOPWORDS_EN_PLUS

from ragtune.config import GenerationSettings
from ragtune.errors import RagtuneError
from ragtune.knowledge.retrieval import RetrievalTimings, Retriever
from ragtune.knowledge.types import ChunkFilter, Hit
from ragtune.models.base import GenerationConfig, GenerationEngine, Message, chat_repetition_penalty
from ragtune.prompts import CITATION_MARKER, build_messages, fit_history, fit_passages

SUPPORT_THRESHOLD = 0.5  # share of a claim's content words a passage must contain to support it
MIN_CLAIM_WORDS = 3  # a sentence with fewer content words ("Hope this helps.") claims too little to attribute
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+|\n+")
_PROMPT_MARGIN_TOKENS = 32  # chat-template tokens not counted by count_tokens


@dataclass
class Answer:
    answer: str
    citations: list[dict]
    passages: list[Hit]
    timings: dict = field(default_factory=dict)
    ranked: list[Hit] = field(default_factory=list)  # every hit retrieved (to rank_depth), best first
    finish_reason: str = "stop"  # or "length": the answer stopped at max_new_tokens

    def to_dict(self) -> dict:
        return {"answer": self.answer, "citations": self.citations, "timings": self.timings}


def _content_words(text: str) -> set[str]:
    """Words longer than three letters, less English function words ("that", "with", "your")."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 3 and w not in STOPWORDS_EN_PLUS}


def _claims(answer: str) -> list[set[str]]:
    """The content words of each sentence (or list item) of an answer; the whole answer's as one claim when no
    sentence has enough of them."""
    claims = [words for part in _SENTENCE_BREAK.split(answer) if len(words := _content_words(part)) >= MIN_CLAIM_WORDS]
    whole = _content_words(answer)
    return claims or ([whole] if whole else [])


def _supporting_passage(claim: set[str], passage_words: list[set[str]]) -> int | None:
    """The number of the passage holding the largest share of a claim's words, if that share is enough."""
    shares = [len(claim & words) / len(claim) for words in passage_words]
    best = max(range(len(shares)), key=shares.__getitem__, default=None)  # ties: the better-ranked passage
    return best + 1 if best is not None and shares[best] >= SUPPORT_THRESHOLD else None


def cite(answer: str, passages: list[Hit]) -> list[dict]:
    """Citations for an answer: the passages it marks as [n]; else, sentence by sentence, the passage that holds
    most of the sentence's content words (an answer drawing on several passages cites each)."""
    marked = sorted({int(n) for group in CITATION_MARKER.findall(answer) for n in re.split(r"\s*,\s*", group)})
    numbers = [n for n in marked if 1 <= n <= len(passages)]
    method = "marker"
    if not numbers:
        method = "overlap"
        claims = _claims(CITATION_MARKER.sub(" ", answer))
        passage_words = [_content_words(hit.text) for hit in passages] if claims else []
        numbers = sorted({n for claim in claims if (n := _supporting_passage(claim, passage_words)) is not None})
    return [{"number": n, "source": passages[n - 1].source, "chunk_id": passages[n - 1].chunk_id,
             "text": passages[n - 1].text, "method": method} for n in numbers]


@dataclass
class AnswerOptions:
    """Per-request settings (an OpenAI request's fields); None keeps the pipeline's own."""

    k: int | None = None
    source_glob: str | None = None
    metadata: dict | None = None  # only documents whose metadata holds these values (see ChunkFilter)
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    chat: bool = False  # a chat answer: with no repetition_penalty, the engine's chat default (chat_repetition_penalty)


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, as it is generated."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The last event of a streamed answer: the whole answer with its citations, usage and timings."""

    answer: Answer


def last_user_turn(messages: list[Message]) -> str:
    """The retrieval query of a conversation: its last user message (the default `condense_query`)."""
    return messages[-1]["content"]


def recent_user_turns(messages: list[Message], turns: int = 3) -> str:
    """The retrieval query of a conversation: its last `turns` user messages, oldest first."""
    return "\n".join([m["content"] for m in messages if m["role"] == "user"][-turns:])


QUERY_FROM = {"last-user-turn": last_user_turn, "recent-user-turns": recent_user_turns}


def condense_function(query_from: str) -> Callable[[list[Message]], str]:
    """The function `retrieval.query_from` names: a built-in way, or `package.module:function` imported."""
    if query_from in QUERY_FROM:
        return QUERY_FROM[query_from]
    module_name, _, function_name = query_from.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise RagtuneError(f"retrieval.query_from names {query_from}, which cannot be imported ({error})",
                           f"use {' or '.join(QUERY_FROM)}, or a function importable where ragtune runs") from None
    if not callable(function):
        raise RagtuneError(f"retrieval.query_from names {query_from}, which is not a function",
                           "name a function that takes the messages and returns the query")
    return function


class RagPipeline:
    """Answers a conversation with a generator over a retriever (closed book when k = 0). The retrieval query
    comes from the conversation through `condense_query` (default: the last user turn)."""

    def __init__(self, retriever: Retriever, generator: GenerationEngine, settings: GenerationSettings,
                 condense_query: Callable[[list[Message]], str] = last_user_turn):
        self.retriever = retriever
        self.generator = generator
        self.settings = settings
        self.condense_query = condense_query

    def generation_config(self, options: AnswerOptions | None = None) -> GenerationConfig:
        options = options or AnswerOptions()
        chosen = {name: getattr(options, name) for name in ("max_new_tokens", "temperature", "top_p", "stop", "seed",
                                                             "repetition_penalty", "frequency_penalty",
                                                             "presence_penalty")}
        penalty = chat_repetition_penalty(self.generator) if options.chat else self.settings.repetition_penalty
        return GenerationConfig(**{"max_new_tokens": self.settings.max_new_tokens,
                                   "temperature": self.settings.temperature,
                                   "repetition_penalty": penalty,
                                   **{key: value for key, value in chosen.items() if value is not None}})

    def answer(self, conversation: str | list[Message], options: AnswerOptions | None = None, *,
               rank_depth: int = 0) -> Answer:
        """Answer a question or a conversation (its last message from the user) from its top k passages.

        With `rank_depth`, the one retrieval ranks that many hits (Answer.ranked, for recall@k and MRR) and the
        prompt takes the first k of them, the same passages a depth-k retrieval gives.
        """
        prepared = self._prepare(conversation, options, rank_depth)
        prepared.generation_started = time.perf_counter()
        generation = self.generator.generate(prepared.messages, prepared.config)
        return prepared.finish(generation.text, generation.prompt_tokens, generation.completion_tokens, None,
                               generation.finish_reason)

    def stream(self, conversation: str | list[Message], options: AnswerOptions | None = None
               ) -> Iterator[TextDelta | Finished]:
        """The answer as events: its text pieces as they are generated, then one `Finished`. The conversation is
        checked and the passages retrieved now (errors raise here); generating starts with the iteration."""
        return self._events(self._prepare(conversation, options, 0))

    def _events(self, prepared: _Prepared) -> Iterator[TextDelta | Finished]:
        pieces, first_token_at = [], None
        prepared.generation_started = time.perf_counter()  # a served stream may have waited for its engine
        for piece in self.generator.stream(prepared.messages, prepared.config):
            first_token_at = first_token_at or time.perf_counter()
            pieces.append(piece)
            yield TextDelta(piece)
        text = "".join(pieces)
        prompt_tokens = self.generator.count_tokens("\n".join(m["content"] for m in prepared.messages))
        completion_tokens = self.generator.count_tokens(text.strip())
        finish_reason = "length" if completion_tokens >= prepared.config.max_new_tokens else "stop"
        yield Finished(prepared.finish(text, prompt_tokens, completion_tokens, first_token_at, finish_reason))

    def _prepare(self, conversation: str | list[Message], options: AnswerOptions | None,
                 rank_depth: int) -> _Prepared:
        started = time.perf_counter()
        options = options or AnswerOptions()
        messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else conversation
        if not messages or messages[-1].get("role") != "user":
            raise RagtuneError("the conversation must end with a user message", "add the question as the last "
                               "message, with role 'user'")
        k = self.retriever.config.k if options.k is None else options.k
        question = messages[-1]["content"]
        query = self.condense_query(messages) if k > 0 else question
        (ranked,), retrieval = self.retriever.search_timed([query], k=max(k, rank_depth) if k > 0 else 0,
                                                           where=ChunkFilter(options.source_glob,
                                                                             options.metadata or {}))
        config = self.generation_config(options)
        budget = self.settings.context_tokens - config.max_new_tokens - _PROMPT_MARGIN_TOKENS
        history = fit_history(messages[:-1], budget // 2, self.generator.count_tokens)
        budget -= sum(self.generator.count_tokens(turn["content"]) for turn in history)
        passages = fit_passages(question, ranked[:k], budget, self.generator.count_tokens)
        return _Prepared(build_messages(question, passages, history), config, passages, ranked, retrieval, started)


@dataclass
class _Prepared:
    """A request ready to generate: its prompt, decoding and passages, and what it has taken so far."""

    messages: list[Message]
    config: GenerationConfig
    passages: list[Hit]
    ranked: list[Hit]
    retrieval: RetrievalTimings
    started: float
    generation_started: float = 0.0  # set when generating begins

    def finish(self, text: str, prompt_tokens: int, completion_tokens: int, first_token_at: float | None,
               finish_reason: str) -> Answer:
        now = time.perf_counter()
        text = text.strip()
        generation_seconds = now - self.generation_started
        timings = {
            "query_embedding_ms": round(self.retrieval.embed_seconds * 1000, 2),
            "retrieval_ms": round(self.retrieval.search_seconds * 1000, 2),
            "generation_s": round(generation_seconds, 3),
            "total_s": round(now - self.started, 3),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "tokens_per_second": round(completion_tokens / generation_seconds, 2) if generation_seconds else 0.0,
        }
        if first_token_at:
            timings["time_to_first_token_s"] = round(first_token_at - self.generation_started, 3)
        return Answer(text, cite(text, self.passages), self.passages, timings, self.ranked, finish_reason)
