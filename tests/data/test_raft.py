"""RAFT rows: gold passage among distractors in about gold_fraction of rows, cited by its number; distractors
never contain the answer; rows without a gold passage are reported."""

from __future__ import annotations

import random
import re

import pytest
from data_helpers import write_jsonl

from ragtune.data import DatasetSpec, Example, PrepareOptions, prepare_data
from ragtune.data.raft import NO_GOLD, build_raft_examples
from ragtune.errors import RagtuneError
from ragtune.knowledge.types import Hit
from ragtune.prompts import GROUNDED_SYSTEM, build_messages

PASSAGE_START = re.compile(r"(?:^|\n\n)\[(\d+)\] ")
CITATION = re.compile(r" \[(\d+)\]$")


def city_examples(count: int) -> list[Example]:
    return [Example(f"city-{i}", messages=build_messages(f"Which city is number {i}?", [])
                    + [{"role": "assistant", "content": f"City{i}"}], origin=f"cities.jsonl:{i + 1}",
                    question=f"Which city is number {i}?", answer=f"City{i}") for i in range(count)]


def fake_retrieve(question: str, n: int) -> list[Hit]:
    """Hits about many cities, the asked one (when it exists) somewhere among them."""
    number = int(re.search(r"\d+", question).group())
    numbers = random.Random(number).sample(range(1000), 30)
    if number < 1000:
        numbers[number % 7] = number
    return [Hit(chunk_id=i, source=f"cities/{i}.txt", text=f"City{i} is a city with {i} parks.", score=1.0 / (r + 1))
            for r, i in enumerate(numbers)][:n]


def passages_of(example: Example) -> dict[int, str]:
    """The numbered passages of a RAFT row's prompt."""
    block = example.messages[1]["content"].removeprefix("Passages:\n").rsplit("\n\nQuestion: ", 1)[0]
    parts = PASSAGE_START.split(block)[1:]
    return {int(number): text for number, text in zip(parts[::2], parts[1::2])}


def test_gold_in_about_gold_fraction_of_rows_and_cited_by_position():
    examples = city_examples(200)
    built, removed, _ = build_raft_examples(examples, fake_retrieve, k=4, gold_fraction=0.8, seed=5)
    assert removed == [] and len(built) == 200
    with_gold = 0
    for example, original in zip(built, examples):
        passages = passages_of(example)
        assert len(passages) == 4 and example.messages[0]["content"] == GROUNDED_SYSTEM
        assert (example.question, example.answer) == (original.question, original.answer)
        gold = [n for n, text in passages.items() if example.answer in text]
        distractors = [text for n, text in passages.items() if n not in gold]
        assert all(example.answer not in text for text in distractors)
        citation = CITATION.search(example.messages[-1]["content"])
        if gold:
            with_gold += 1
            assert len(gold) == 1 and citation and int(citation.group(1)) == gold[0]
            assert example.messages[-1]["content"] == f"{example.answer} [{gold[0]}]"
        else:
            assert citation is None and example.messages[-1]["content"] == example.answer
    assert 140 <= with_gold <= 180
    again, _, _ = build_raft_examples(examples, fake_retrieve, k=4, gold_fraction=0.8, seed=5)
    assert again == built
    other, _, _ = build_raft_examples(examples, fake_retrieve, k=4, gold_fraction=0.8, seed=6)
    assert other != built
    citations = [CITATION.search(e.messages[-1]["content"]) for e in built]
    assert {int(c.group(1)) for c in citations if c} == {1, 2, 3, 4}  # the gold passage is not always first
    subset, _, _ = build_raft_examples(examples[50:60], fake_retrieve, k=4, gold_fraction=0.8, seed=5)
    assert subset == built[50:60]  # each row's draw depends on its id only


def test_gold_fraction_extremes_and_missing_gold():
    examples = city_examples(20) + [Example("lost", question="Which city is number 5000?", answer="City5000",
                                            origin="cities.jsonl:99")]
    always, removed, _ = build_raft_examples(examples, fake_retrieve, k=3, gold_fraction=1.0, seed=0)
    assert removed == [{"origin": "cities.jsonl:99", "reason": NO_GOLD, "detail": "it names no chunk or source; none "
                        "of the 12 passages retrieved for its question contains its answer"}]
    assert all(CITATION.search(e.messages[-1]["content"]) for e in always)
    never, _, _ = build_raft_examples(examples, fake_retrieve, k=3, gold_fraction=0.0, seed=0)
    assert not any(e.answer in text for e in never for text in passages_of(e).values())


def test_a_rows_context_is_its_gold_passage():
    example = Example("ctx", question="Which city is number 5000?", answer="Metropolis",
                      context="Metropolis is the city number 5000.", origin="ctx.jsonl:1")
    (built,), removed, _ = build_raft_examples([example], fake_retrieve, k=2, gold_fraction=1.0, seed=0)
    assert removed == [] and "Metropolis is the city number 5000." in passages_of(built).values()


def test_raft_over_the_project_knowledge_base(project, corpus, chat_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "What amino acid do cats need?", "answer": "taurine"},
        {"question": "What is the tallest volcano in the solar system?", "answer": "Olympus Mons"},
        {"question": "Who walked on the Moon in 1969?", "answer": "Neil Armstrong"},
        {"question": "What colour are bananas?", "answer": "yellow"},
    ])
    options = PrepareOptions(objective="raft", val_fraction=0, raft_k=2, raft_gold_fraction=1.0, max_seq_length=1024)
    with pytest.raises(RagtuneError) as error:
        prepare_data([DatasetSpec(str(path))], options=options, tokenizer=chat_tokenizer, knowledge_base=project.kb)
    assert "empty" in error.value.message and error.value.hint == "run `ragtune ingest` first"
    project.ingest([str(corpus)])
    data = prepare_data([DatasetSpec(str(path))], options=options, tokenizer=chat_tokenizer,
                        knowledge_base=project.kb)
    assert [(row["origin"], row["reason"]) for row in data.report.removed] == [(f"{path}:4", NO_GOLD)]
    assert data.report.stages["after_raft"] == 3
    for example in data.train:
        (number,) = [n for n, text in passages_of(example).items() if example.answer.lower() in text.lower()]
        assert example.messages[-1]["content"] == f"{example.answer} [{number}]"
        assert len(passages_of(example)) <= 2


def test_the_gold_passage_comes_from_the_named_chunk_then_source_then_text_then_similarity():
    from dataclasses import replace

    from ragtune.data.raft import GoldFinder

    named_chunk = Hit(chunk_id=7000, source="cities/named.txt", text="A chunk the row names.", score=1.0)
    finder = GoldFinder(chunk_by_id=lambda chunk_id: named_chunk if chunk_id == 7000 else None,
                        similarity=lambda answer, texts: [0.9 if "parks" in text else 0.1 for text in texts])
    base = city_examples(1)[0]  # "Which city is number 0?", answer City0, City0 among the hits
    abstractive = replace(base, answer="A city known for its green spaces")  # copied from no passage
    hits = fake_retrieve(base.question, 16)
    cases = [(replace(base, chunk_id=7000), "chunk_id", named_chunk),
             (replace(base, chunk_id=1, source=hits[3].source), "source", hits[3]),  # unknown chunk: the source
             (base, "answer_text", next(hit for hit in hits if "City0 " in hit.text)),
             (abstractive, "similar_to_answer", hits[0])]
    for example, how, expected in cases:
        assert finder.find(example, hits) == (expected, how), how
    assert GoldFinder().find(abstractive, hits) == (None, None)  # no similarity available: nothing resembles
    unlike = GoldFinder(similarity=lambda answer, texts: [0.2] * len(texts))
    built, removed, chosen_by = build_raft_examples([abstractive, base], fake_retrieve, k=3, gold_fraction=1.0,
                                                    seed=0, gold_finder=unlike)
    assert [(row["origin"], row["reason"]) for row in removed] == [(base.origin, NO_GOLD)]  # under the floor
    assert len(built) == 1
    named = replace(base, chunk_id=1, source="elsewhere.txt")
    assert finder.missing(named, hits) == ("its chunk 1 was not found; none of the 16 passages retrieved for its "
                                           "question comes from its source 'elsewhere.txt' or contains or resembles "
                                           "its answer")
    assert chosen_by["answer_text"] == 1 and sum(chosen_by.values()) == 1
