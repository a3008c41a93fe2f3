"""The RAG answer: process the query, retrieve, put the numbered passages before the question, generate,
and map the answer back to the passages and sources it rests on."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

from ragtune.config import GenerationSettings
from ragtune.knowledge.retrieval import Retriever
from ragtune.knowledge.types import Hit
from ragtune.models.base import GenerationConfig, GenerationEngine
from ragtune.prompts import build_messages, fit_passages

CITATION_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
SUPPORT_THRESHOLD = 0.5  # share of the answer's content words a passage must contain to be cited
_WORD = re.compile(r"[a-z0-9]+")
_PROMPT_MARGIN_TOKENS = 32  # chat-template tokens not counted by count_tokens


@dataclass
class Answer:
    answer: str
    citations: list[dict]
    passages: list[Hit]
    timings: dict = field(default_factory=dict)
    ranked: list[Hit] = field(default_factory=list)  # every hit retrieved (to rank_depth), best first

    def to_dict(self) -> dict:
        return {"answer": self.answer, "citations": self.citations, "timings": self.timings}


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 3}


def cite(answer: str, passages: list[Hit]) -> list[dict]:
    """Citations for an answer: the passages it marks as [n], else those containing most of its content words."""
    marked = sorted({int(n) for group in CITATION_MARKER.findall(answer) for n in re.split(r"\s*,\s*", group)})
    numbers = [n for n in marked if 1 <= n <= len(passages)]
    method = "marker"
    if not numbers:
        method = "overlap"
        words = _content_words(CITATION_MARKER.sub(" ", answer))
        numbers = [i for i, hit in enumerate(passages, start=1)
                   if words and len(words & _content_words(hit.text)) / len(words) >= SUPPORT_THRESHOLD]
    return [{"number": n, "source": passages[n - 1].source, "chunk_id": passages[n - 1].chunk_id,
             "text": passages[n - 1].text, "method": method} for n in numbers]


class RagPipeline:
    """Answers questions with a generator over a retriever (closed book when k = 0)."""

    def __init__(self, retriever: Retriever, generator: GenerationEngine, settings: GenerationSettings):
        self.retriever = retriever
        self.generator = generator
        self.settings = settings

    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.settings.max_new_tokens, temperature=self.settings.temperature)

    def answer(self, question: str, k: int | None = None, source_glob: str | None = None,
               on_text: Callable[[str], None] | None = None, rank_depth: int = 0) -> Answer:
        """Answer one question from its top `k` passages; `on_text` receives the answer as it streams.

        With `rank_depth`, the one retrieval ranks that many hits (Answer.ranked, for recall@k and MRR) and the
        prompt takes the first k of them, the same passages a depth-k retrieval gives.
        """
        started = time.perf_counter()
        k = self.retriever.config.k if k is None else k
        ranked = self.retriever.search(question, k=max(k, rank_depth) if k > 0 else 0, source_glob=source_glob)
        hits = ranked[:k]
        retrieval = self.retriever.last_timings
        budget = self.settings.context_tokens - self.settings.max_new_tokens - _PROMPT_MARGIN_TOKENS
        passages = fit_passages(question, hits, budget, self.generator.count_tokens)
        messages = build_messages(question, passages)
        config = self.generation_config()
        generation_started = time.perf_counter()
        if on_text:
            pieces = []
            first_token_at = None
            for piece in self.generator.stream(messages, config):
                first_token_at = first_token_at or time.perf_counter()
                pieces.append(piece)
                on_text(piece)
            text = "".join(pieces).strip()
            completion_tokens = self.generator.count_tokens(text)
            prompt_tokens = self.generator.count_tokens("\n".join(m["content"] for m in messages))
        else:
            generation = self.generator.generate(messages, config)
            text, completion_tokens, prompt_tokens = generation.text.strip(), generation.completion_tokens, \
                generation.prompt_tokens
            first_token_at = None
        generation_seconds = time.perf_counter() - generation_started
        timings = {
            "query_embedding_ms": round(retrieval.embed_seconds * 1000, 2),
            "retrieval_ms": round(retrieval.search_seconds * 1000, 2),
            "generation_s": round(generation_seconds, 3),
            "total_s": round(time.perf_counter() - started, 3),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "tokens_per_second": round(completion_tokens / generation_seconds, 2) if generation_seconds else 0.0,
        }
        if first_token_at:
            timings["time_to_first_token_s"] = round(first_token_at - generation_started, 3)
        return Answer(text, cite(text, passages), passages, timings, ranked)
