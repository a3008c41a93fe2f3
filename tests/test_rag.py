"""Prompt assembly, context budgeting and citations of the RAG answer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragtune.config import GenerationSettings, ProjectConfig
from ragtune.errors import RagtuneError
from ragtune.knowledge.retrieval import RetrievalTimings
from ragtune.knowledge.types import Hit
from ragtune.models.base import Generation
from ragtune.prompts import CLOSED_BOOK_SYSTEM, GROUNDED_SYSTEM, build_messages, fit_history, fit_passages
from ragtune.rag import AnswerOptions, Finished, RagPipeline, TextDelta, cite, condense_function, recent_user_turns

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


def test_an_answer_drawing_on_several_passages_cites_each_sentence_s_support():
    passages = [*PASSAGES, Hit(chunk_id=12, source="c.txt", text="Employees get 27 days of paid vacation a year.",
                               score=0.2)]
    two = cite("1. Vacation: employees get 27 days of paid vacation.\n2. Bananas are rich in potassium.", passages)
    assert [(c["source"], c["method"]) for c in two] == [("b.txt", "overlap"), ("c.txt", "overlap")]
    # one copied sentence is cited although the rest of a long answer is not supported by any passage
    rambling = "The Eiffel Tower is 330 metres tall. " + "Its lifts were painted green by sailors every winter. " * 5
    assert [c["source"] for c in cite(rambling, passages)] == ["a.txt"]
    assert [c["source"] for c in cite("In Paris.", passages)] == ["a.txt"]  # a short answer is one claim
    # filler sentences claim nothing: their words ("that", "with", "this") cite no passage
    filler = [Hit(chunk_id=30, source="masks.txt", text="Masks reduce transmission of the virus.", score=1),
              Hit(chunk_id=31, source="other.txt", text="That was done with this method, hoping it helps.", score=0.5)]
    assert [c["source"] for c in cite("Masks reduce transmission. Hope that helps with this.", filler)] == ["masks.txt"]
    twins = [Hit(chunk_id=20, source="first.txt", text="Bananas are rich in potassium.", score=1),
             Hit(chunk_id=21, source="second.txt", text="Bananas are rich in potassium.", score=0.9)]
    assert [c["source"] for c in cite("Bananas are rich in potassium.", twins)] == ["first.txt"]  # the better ranked


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


def test_a_chat_answer_gets_the_engine_s_chat_penalty_and_a_measured_one_the_setting():
    from ragtune.config import CHAT_REPETITION_PENALTY
    from ragtune.models.openai_engine import OpenAIEngine

    local = RagPipeline(None, RecordingEngine("x"), GenerationSettings(repetition_penalty=1.05))
    assert local.generation_config(AnswerOptions()).repetition_penalty == 1.05  # as compare measures
    assert local.generation_config(AnswerOptions(chat=True)).repetition_penalty == CHAT_REPETITION_PENALTY
    assert local.generation_config(AnswerOptions(chat=True, repetition_penalty=1.3)).repetition_penalty == 1.3
    remote = RagPipeline(None, OpenAIEngine("gpt-4o-mini", "https://api.example.org/v1"), GenerationSettings())
    config = remote.generation_config(AnswerOptions(chat=True))
    assert config.repetition_penalty == 1.0  # an OpenAI-compatible server decodes as configured
    assert "repetition_penalty" not in remote.generator._body([], config, stream=False)  # and is not sent the field


def test_pipeline_retrieves_prompts_and_cites(project, corpus):
    project.ingest([str(corpus)])
    engine = RecordingEngine("Olympus Mons [1]")
    pipeline = RagPipeline(project.retriever, engine, GenerationSettings())
    answer = pipeline.answer("What is the tallest volcano in the solar system?", AnswerOptions(k=2))
    assert "Olympus Mons on Mars" in engine.seen[0][1]["content"]
    assert answer.citations[0]["source"] == "space/mars.txt"
    assert answer.timings["completion_tokens"] == 5 and answer.timings["retrieval_ms"] >= 0
    events = list(pipeline.stream("tallest volcano?", AnswerOptions(k=0)))
    assert engine.seen[-1][0]["content"] == CLOSED_BOOK_SYSTEM
    assert events[:-1] == [TextDelta("Olympus"), TextDelta("Mons"), TextDelta("[1]")]
    assert isinstance(events[-1], Finished) and events[-1].answer.answer == "OlympusMons[1]"
    assert events[-1].answer.timings["completion_tokens"] == 1 and events[-1].answer.citations == []


def test_a_conversation_keeps_its_turns_and_retrieves_for_the_last_question(project, corpus):
    project.ingest([str(corpus)])
    engine = RecordingEngine("It is on Mars [1].")
    queries = []
    pipeline = RagPipeline(project.retriever, engine, GenerationSettings(),
                           condense_query=lambda messages: queries.append(messages) or messages[-1]["content"])
    conversation = [{"role": "system", "content": "Answer in one sentence."},
                    {"role": "user", "content": "Tell me about volcanoes."},
                    {"role": "assistant", "content": "Volcanoes erupt lava."},
                    {"role": "user", "content": "What is the tallest volcano in the solar system?"}]
    answer = pipeline.answer(conversation, AnswerOptions(k=2))
    prompt = engine.seen[0]
    assert prompt[0]["content"] == GROUNDED_SYSTEM + "\n\nAnswer in one sentence."
    assert prompt[1:3] == conversation[1:3]
    assert "Olympus Mons on Mars" in prompt[3]["content"] and prompt[3]["content"].endswith(
        "Question: What is the tallest volcano in the solar system?")
    assert queries == [conversation] and answer.citations[0]["source"] == "space/mars.txt"
    with pytest.raises(RagtuneError, match="must end with a user message"):
        pipeline.answer(conversation[:3])


def test_per_request_options_override_the_project_decoding(project):
    pipeline = RagPipeline(project.retriever, RecordingEngine("x"), GenerationSettings(max_new_tokens=160))
    config = pipeline.generation_config(AnswerOptions(max_new_tokens=20, temperature=0.7, stop=["\n"], seed=3))
    assert (config.max_new_tokens, config.temperature, config.stop, config.seed, config.top_p) == (20, 0.7, ["\n"],
                                                                                                   3, 1.0)
    assert pipeline.generation_config().max_new_tokens == 160


def test_a_strategy_decides_its_model_and_its_passages(project, corpus):
    project.ingest([str(corpus)])
    with pytest.raises(RagtuneError, match="fine-tuned model"):
        project.runtime("ft")
    base, rag = project.runtime("base"), project.runtime("rag", k=2)
    assert (base.k, rag.k, rag.model) == (0, 2, project.config.models.generator)
    with pytest.raises(RagtuneError, match="closed book"):
        base.answer("q?", AnswerOptions(k=3))
    with pytest.raises(RagtuneError, match="k is 0"):
        rag.answer("q?", AnswerOptions(k=0))


def test_history_keeps_to_its_budget_oldest_turns_first_without_old_citation_markers():
    words = lambda text: len(text.split())  # noqa: E731
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "one two three four"},
               {"role": "assistant", "content": "Olympus Mons [1] is tall [2, 3]."},
               {"role": "user", "content": "five six"}]
    assert fit_history(history, 100, words)[2]["content"] == "Olympus Mons is tall ."
    kept = fit_history(history, 9, words)
    assert [m["content"] for m in kept] == ["Be brief.", "Olympus Mons is tall .", "five six"]
    assert [m["role"] for m in fit_history(history, 1, words)] == ["system"]


def condense_to_topic(messages):
    """A `retrieval.query_from` hook for the test below."""
    return "volcano " + messages[-1]["content"]


def test_the_query_from_setting_picks_how_a_conversation_becomes_the_query(project, corpus, monkeypatch):
    conversation = [{"role": "user", "content": "Tell me about Olympus Mons."},
                    {"role": "assistant", "content": "It is a volcano."},
                    {"role": "user", "content": "How tall is it?"}]
    assert recent_user_turns(conversation) == "Tell me about Olympus Mons.\nHow tall is it?"
    assert condense_function("last-user-turn")(conversation) == "How tall is it?"
    assert condense_function("test_rag:condense_to_topic")(conversation) == "volcano How tall is it?"
    project.ingest([str(corpus)])
    queries = []
    monkeypatch.setattr(project.retriever, "search_timed",
                        lambda q, **kw: queries.append(q) or ([[]], RetrievalTimings()))
    project.config.retrieval.query_from = "recent-user-turns"
    project.pipeline(generator=RecordingEngine("It is 22 km tall.")).answer(conversation)
    assert queries == [[recent_user_turns(conversation)]]
    with pytest.raises(RagtuneError, match="cannot be imported"):
        condense_function("no_such_module:condense")
    with pytest.raises(ValidationError, match="query_from"):
        ProjectConfig.model_validate({"retrieval": {"query_from": "the whole chat"}})
