"""`ragtune data synthesize` on a scripted question writer (real MiniLM retrieval): every rejection reason on an
item built for it, coverage in proportion to document size, splits by chunk, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import RagtuneError
from ragtune.knowledge.types import Hit
from ragtune.models.base import Generation
from ragtune.synthesis import SynthesisOptions, synthesize
from ragtune.synthesis.checks import CheckedItem, CheckSettings, check_alone, check_items
from ragtune.synthesis.questions import parse_question
from ragtune.synthesis.run import output_paths, split_by_chunk
from ragtune.synthesis.sampling import plan_items

CHUNK = ("The bridge over the river was finished in 1932 after six years of work. It carries 40,000 cars a day "
         "because it links the two largest towns of the valley.")
SETTINGS = CheckSettings()

DOCUMENTS = {
    "bridges.txt": CHUNK + "\n\nEngineers inspect the steel cables every spring. The last inspection found "
                           "no cracks in any of the 260 cables of the bridge.",
    "bees.txt": "Honey bees live in colonies of up to 60,000 workers. A single queen lays all of the eggs of "
                "the colony. Bees dance because the dance tells other bees where flowers are.",
    "glaciers.txt": "The Aletsch Glacier is the largest glacier in the Alps at 23 kilometres long. It has lost "
                    "about 3 km of its length since 1870 because summers have become warmer.",
    "tides.txt": "The tides rise and fall twice a day because the Moon pulls on the oceans. The highest tides in "
                 "the world reach 16 metres in the Bay of Fundy in Canada.",
    "tea.txt": "Green tea is made from leaves that are heated soon after picking. Black tea is left to oxidise "
               "for up to 4 hours because oxidation gives it a darker colour and a stronger taste.",
}


@pytest.mark.parametrize("question, answer, reason", [
    (None, "in 1932", "malformed"),
    ("When was the bridge finished", "in 1932", "not_a_question"),
    ("Bridge finished?", "in 1932", "too_short"),
    ("When " + "really " * 40 + "was it finished?", "in 1932", "too_long"),
    ("Was the bridge finished in 1932 after six years?", "in 1932", "answer_in_question"),
    ("Why does it carries 40,000 cars a day and links the two largest towns of the valley?",
     "It carries 40,000 cars a day because it links the two largest towns of the valley.", "answer_in_question"),
    ("Why does the bridge carry so many cars a day?",
     "It carries 40,000 cars a day because it links the two largest towns of the valley.", None),
    ("How many cars cross the bridge every day?", "the largest towns of the valley", "wrong_answer_type"),
    ("When did the ferry service across the river stop?", "when the tunnel opened in 1950", "unsupported"),
    ("When was the bridge over the river finished?", "in 1932", None),
])
def test_each_check_on_an_item_built_to_fail_it(question, answer, reason):
    assert check_alone(question, answer, CHUNK, SETTINGS) == reason


class FixedRetriever:
    """Ranks the chunks given by question text (the round trip's retriever)."""

    def __init__(self, ranking: dict[str, list[int]]):
        self.ranking = ranking

    def search_timed(self, queries, k):
        return [[Hit(chunk_id=c, source="s", text="", score=1.0) for c in self.ranking[q][:k]] for q in queries], None


def test_near_duplicates_and_failed_round_trips_are_rejected_after_the_single_item_checks():
    def item(index, question, chunk_id):
        return CheckedItem({"index": index, "question": question, "answer": "in 1932", "chunk": CHUNK,
                            "chunk_id": chunk_id})

    items = [item(0, "When was the bridge over the river finished?", 1),
             item(1, "When was the bridge over the river finished ?", 1),  # the same question again
             item(2, "In which year was the river bridge completed?", 2),
             item(3, "When did work on the bridge come to an end?", 3)]
    retriever = FixedRetriever({items[0].fields["question"]: [1, 2], items[2].fields["question"]: [1, 2],
                                items[3].fields["question"]: [1, 2, 4, 5, 6, 3]})
    check_items(items, retriever, CheckSettings(round_trip_k=5))
    assert [i.reason for i in items] == [None, "near_duplicate", None, "no_round_trip"]  # chunk 3 ranks 6th


def test_reply_parsing_keeps_the_question_line():
    assert parse_question('Question: "When was it built?"\nAnswer: 1932') == "When was it built?"
    assert parse_question("  \n") is None


def test_items_cover_documents_in_proportion_to_their_size_or_evenly():
    chunks = [(i, "big.txt", CHUNK) for i in range(6)] + [(10 + i, "mid.txt", CHUNK) for i in range(3)] + \
             [(20, "small.txt", CHUNK)]
    by_size = plan_items(chunks, 10, seed=1)
    assert [sum(p.source == s for p in by_size) for s in ("big.txt", "mid.txt", "small.txt")] == [6, 3, 1]
    even = plan_items(chunks, 6, coverage="even", seed=1)
    assert [sum(p.source == s for p in even) for s in ("big.txt", "mid.txt", "small.txt")] == [2, 2, 2]
    for planned in by_size:
        assert planned.chunk[planned.start:planned.end] == planned.answer  # a span of its chunk
    assert {p.kind for p in by_size} <= {"factual", "why", "two_sentences"}
    assert plan_items(chunks, 10, seed=1) == by_size  # seeded


def test_splits_never_put_questions_about_one_chunk_on_both_sides():
    rows = [{"chunk_id": i // 3, "index": i} for i in range(60)]
    splits = split_by_chunk(rows, 0.1, 0.2, seed=4)
    chunks = {name: {row["chunk_id"] for row in part} for name, part in splits.items()}
    assert not chunks["train"] & chunks["test"] and not chunks["train"] & chunks["val"]
    assert sum(map(len, splits.values())) == 60 and len(splits["test"]) >= 12


class QuestionWriter:
    """Writes "What does the passage say about <first words of the answer>?"; can stop after `fail_after` calls."""

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after, self.items = 0, fail_after, 0

    def generate_batch(self, conversations, config):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.items += len(conversations)
        replies = []
        for conversation in conversations:
            answer = conversation[-1]["content"].split("\nAnswer: ")[1].split("\n")[0]
            replies.append(f"What does the passage say about {' '.join(answer.split()[:5])}?")
        return [Generation(text, 10, 10, 0.1) for text in replies]


@pytest.fixture
def documents(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_a_run_writes_checked_items_splits_and_a_report_and_resumes_where_it_stopped(project, documents,
                                                                                     tmp_path, monkeypatch):
    project.ingest([str(documents)])
    writers = iter([QuestionWriter(), QuestionWriter(fail_after=1), QuestionWriter()])
    monkeypatch.setattr("ragtune.models.loading.load_generator", lambda *a, **k: next(writers))
    options = SynthesisOptions(n=12, seed=2)
    straight = synthesize(project, tmp_path / "straight" / "q.jsonl", options)
    report = straight.report
    assert report["planned"] == sum(c["planned"] for c in report["kinds"].values()) > 8
    assert report["kept"] + sum(report["rejected"].values()) == report["planned"]
    assert report["coverage"]["documents"] == 5
    rows = [json.loads(line) for line in straight.questions.read_text().splitlines()]
    assert len(rows) == report["kept"] and {"question", "answer", "source", "chunk_id", "answer_start"} <= set(rows[0])
    markdown = output_paths(straight.questions)["report_md"].read_text()
    assert "Pass rate" in markdown and "side by side" in markdown

    out = tmp_path / "resumed" / "q.jsonl"
    with pytest.raises(KeyboardInterrupt):
        synthesize(project, out, options)  # the second batch is interrupted
    first = len(output_paths(out)["generated"].read_text().splitlines()) - 1
    assert first == 8
    third = QuestionWriter()
    writers = iter([third])
    resumed = synthesize(project, out, options)
    assert third.items == report["planned"] - 8  # only what was not written before
    assert out.read_text() == straight.questions.read_text()
    assert resumed.report["kept"] == report["kept"]
    with pytest.raises(RagtuneError, match="other settings"):
        synthesize(project, out, SynthesisOptions(n=5, seed=2))


def test_an_empty_knowledge_base_says_what_to_do(project, tmp_path):
    with pytest.raises(RagtuneError, match="ingest documents first"):
        synthesize(project, tmp_path / "q.jsonl", SynthesisOptions(n=5))


@pytest.mark.parametrize("question, answer, matches", [
    ("What was the purpose of enrolling patients?", "May 2012", False),  # a date answers no "when"
    ("When were the patients enrolled?", "May 2012", True),
    ("What was the mean time from onset to admission?", "11 days", True),
    ("What is the most frequent manifestation?", "2 weeks", False),  # a quantity answers no "how much"
    ("Who showed that the claim was wrong?", "Feng Gao", True),
])
def test_a_date_or_quantity_answer_needs_a_question_that_asks_for_one(question, answer, matches):
    from ragtune.synthesis.checks import answer_type_matches

    assert answer_type_matches(question, answer) is matches


def test_documents_too_short_to_question_say_so(project, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "list.txt").write_text("Milk. Eggs. Bread rolls.\n\nCall Anna. Pay rent today.", encoding="utf-8")
    project.ingest([str(notes)])
    with pytest.raises(RagtuneError, match="longer documents"):
        synthesize(project, tmp_path / "q.jsonl", SynthesisOptions(n=5))


def test_an_unreachable_model_endpoint_says_what_to_do_and_writes_no_set(project, documents, tmp_path):
    project.ingest([str(documents)])
    out = tmp_path / "q.jsonl"
    with pytest.raises(RagtuneError, match="cannot reach"):
        synthesize(project, out, SynthesisOptions(n=6, model="openai:m@http://127.0.0.1:9/v1"))
    assert not out.exists() and not output_paths(out)["report_md"].exists()


class GarbageWriter(QuestionWriter):
    """A model that returns nothing usable: an empty reply, or text without a question."""

    def generate_batch(self, conversations, config):
        self.items += len(conversations)
        return [Generation("" if i % 2 else "lorem ipsum dolor sit amet", 5, 0, 0.1) for i in range(len(conversations))]


def test_a_model_that_returns_garbage_says_what_to_do_and_keeps_the_earlier_set(project, documents, tmp_path,
                                                                                 monkeypatch):
    project.ingest([str(documents)])
    out = tmp_path / "q.jsonl"
    writers = iter([QuestionWriter(), GarbageWriter()])
    monkeypatch.setattr("ragtune.models.loading.load_generator", lambda *a, **k: next(writers))
    good = synthesize(project, out, SynthesisOptions(n=10, seed=1))
    written = out.read_text()
    assert good.report["kept"] > 0
    output_paths(out)["generated"].unlink()  # write again, with another model's replies
    with pytest.raises(RagtuneError, match="none of the .* passed the checks") as error:
        synthesize(project, out, SynthesisOptions(n=10, seed=1))
    assert "stronger" in error.value.hint and "report.md" in str(error.value)
    assert out.read_text() == written  # the earlier set is not lost
    rejected = [json.loads(line) for line in output_paths(out)["rejected"].read_text().splitlines()]
    assert rejected and {row["reason"] for row in rejected} <= {"malformed", "not_a_question"}
