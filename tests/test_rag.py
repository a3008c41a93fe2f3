"""Prompt assembly, context budgeting and citations of the RAG answer."""

from __future__ import annotations

from ragtune.config import GenerationSettings
from ragtune.knowledge.types import Hit
from ragtune.models.base import Generation
from ragtune.prompts import CLOSED_BOOK_SYSTEM, GROUNDED_SYSTEM, build_messages, fit_passages
from ragtune.rag import RagPipeline, cite

PASSAGES = [Hit(chunk_id=10, source="a.txt", text="The Eiffel Tower is 330 metres tall and stands in Paris.", score=1),
            Hit(chunk_id=11, source="b.txt", text="Bananas are rich in potassium.", score=0.5)]


def test_passages_come_numbered_before_the_question():
    messages = build_messages("How tall is the Eiffel Tower?", PASSAGES)
    assert messages[0]["content"] == GROUNDED_SYSTEM
    user = messages[1]["content"]
    assert user.index("[1] The Eiffel") < user.index("[2] Bananas") < user.index("Question:")


def test_closed_book_prompt_has_no_passages():
    messages = build_messages("How tall is the Eiffel Tower?", [])
    assert messages[0]["content"] == CLOSED_BOOK_SYSTEM
    assert messages[1]["content"] == "Question: How tall is the Eiffel Tower?"


def test_citations_from_markers_then_from_overlap():
    assert [c["chunk_id"] for c in cite("It is 330 metres tall [1].", PASSAGES)] == [10]
    assert [c["number"] for c in cite("See [2, 1] and [7].", PASSAGES)] == [1, 2]
    by_overlap = cite("The Eiffel Tower stands 330 metres tall in Paris.", PASSAGES)
    assert [(c["source"], c["method"]) for c in by_overlap] == [("a.txt", "overlap")]
    assert cite("I do not know.", PASSAGES) == []


def test_fit_passages_respects_the_budget():
    words = lambda text: len(text.split())  # noqa: E731
    long = [Hit(chunk_id=i, source="x", text="word " * 100, score=0) for i in range(5)]
    kept = fit_passages("q?", long, budget_tokens=250, count_tokens=words)
    assert len(kept) == 2
    cut = fit_passages("q?", long, budget_tokens=60, count_tokens=words)
    assert len(cut) == 1 and words(cut[0].text) < 60


class RecordingEngine:
    """A generation engine double that records the prompt and answers with a fixed text."""

    name = "recording"

    def __init__(self, reply: str):
        self.reply, self.seen = reply, []

    def generate(self, messages, config):
        self.seen.append(messages)
        return Generation(self.reply, prompt_tokens=50, completion_tokens=5, seconds=0.1)

    def stream(self, messages, config):
        self.seen.append(messages)
        yield from self.reply.split(" ")

    def count_tokens(self, text):
        return len(text.split())


def test_pipeline_retrieves_prompts_and_cites(project, corpus):
    project.ingest([str(corpus)])
    engine = RecordingEngine("Olympus Mons [1]")
    pipeline = RagPipeline(project.retriever, engine, GenerationSettings())
    answer = pipeline.answer("What is the tallest volcano in the solar system?", k=2)
    assert "Olympus Mons on Mars" in engine.seen[0][1]["content"]
    assert answer.citations[0]["source"] == "space/mars.txt"
    assert answer.timings["completion_tokens"] == 5 and answer.timings["retrieval_ms"] >= 0
    streamed = []
    pipeline.answer("tallest volcano?", k=0, on_text=streamed.append)
    assert engine.seen[-1][0]["content"] == CLOSED_BOOK_SYSTEM and streamed == ["Olympus", "Mons", "[1]"]
