"""Dataset specs and row formats: Q&A, instruction, chat and raw text; bad rows reported with file:line."""

from __future__ import annotations

import pytest
from data_helpers import write_jsonl

from ragtune.data import DatasetSpec, load_examples, parse_dataset_spec
from ragtune.errors import RagtuneError
from ragtune.prompts import CLOSED_BOOK_SYSTEM, GROUNDED_SYSTEM, build_messages


@pytest.mark.parametrize("text, expected", [
    ("train.jsonl", DatasetSpec("train.jsonl")),
    ("train.jsonl:weight=2", DatasetSpec("train.jsonl", 2.0)),
    ("data/style.jsonl:weight=0.5:task=style", DatasetSpec("data/style.jsonl", 0.5, "style")),
    ("C:/data/x.jsonl:task=qa", DatasetSpec("C:/data/x.jsonl", 1.0, "qa")),
    ("kb", DatasetSpec("kb")),
])
def test_parse_dataset_spec(text, expected):
    assert parse_dataset_spec(text) == expected


@pytest.mark.parametrize("text, message", [
    ("train.jsonl:wieght=2", "unknown option 'wieght'"),
    ("train.jsonl:weight=0", "weight must be a positive number"),
    ("train.jsonl:weight=lots", "weight must be a positive number"),
    ("train.jsonl:task=", "empty task name"),
])
def test_parse_dataset_spec_errors(text, message):
    with pytest.raises(RagtuneError, match=message):
        parse_dataset_spec(text)


def test_qa_rows_use_the_inference_prompts(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "What is the  capital of France?", "answer": "Paris"},
        {"id": "moon", "question": "How long is a lunar orbit?", "answer": "27.3 days",
         "context": "The Moon orbits the Earth every 27.3 days.", "choices": ["27.3 days", "1 year"]},
    ])
    (closed, grounded), removed = load_examples(DatasetSpec(str(path), task="facts"), objective="sft")
    assert removed == []
    assert closed.id == "qa-1" and closed.origin == f"{path}:1" and closed.task == "facts"
    assert closed.messages == build_messages("What is the capital of France?", []) + [
        {"role": "assistant", "content": "Paris"}]
    assert closed.messages[0]["content"] == CLOSED_BOOK_SYSTEM
    assert grounded.id == "moon" and grounded.choices == ["27.3 days", "1 year"]
    assert grounded.messages[0]["content"] == GROUNDED_SYSTEM
    assert grounded.messages[1]["content"] == ("Passages:\n[1] The Moon orbits the Earth every 27.3 days.\n\n"
                                               "Question: How long is a lunar orbit?")
    assert (grounded.question, grounded.answer, grounded.context) == (
        "How long is a lunar orbit?", "27.3 days", "The Moon orbits the Earth every 27.3 days.")


def test_instruction_and_chat_rows(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye."}]
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output": "Cats sleep."},
        {"instruction": "Say hi.", "output": "Hi!"},
        {"messages": chat},
    ])
    (with_input, without_input, conversation), removed = load_examples(DatasetSpec(str(path)), objective="sft")
    assert removed == []
    assert with_input.messages == [{"role": "user", "content": "Summarise the text.\n\nCats sleep a lot."},
                                   {"role": "assistant", "content": "Cats sleep."}]
    assert without_input.messages[0] == {"role": "user", "content": "Say hi."}
    assert conversation.messages == chat


def test_bad_rows_are_reported_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "Fine?", "answer": "Yes"},
        "{not json",
        "[1, 2]",
        {"question": "Where is the answer?"},
        {"question": "Empty answer", "answer": "   "},
        {"messages": [{"role": "user", "content": "no reply"}]},
        {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"prompt": "unknown format"},
        "",
        {"text": "raw text is for cpt"},
    ])
    examples, removed = load_examples(DatasetSpec(str(path)), objective="sft")
    assert [e.origin for e in examples] == [f"{path}:1"]
    by_line = {int(row["origin"].rsplit(":", 1)[1]): row for row in removed}
    assert by_line[2]["reason"] == "invalid JSON" and "column" in by_line[2]["detail"]
    assert by_line[3]["reason"] == "not a JSON object"
    assert by_line[4]["reason"] == "missing field `answer`"
    assert by_line[5]["reason"] == "empty `answer`"
    assert by_line[6]["reason"] == "no answer"
    assert by_line[7]["reason"] == "invalid message" and "message 1" in by_line[7]["detail"]
    assert by_line[8]["reason"] == "unknown row format" and "prompt" in by_line[8]["detail"]
    assert 9 not in by_line  # blank lines are skipped, not removed
    assert by_line[10]["reason"] == "raw text row"


def test_a_file_without_usable_rows_names_its_first_bad_line(tmp_path):
    path = write_jsonl(tmp_path / "broken.jsonl", ["", "{\"question\": \"x\"", {"question": "q"}])
    with pytest.raises(RagtuneError, match=r"broken\.jsonl: none of its 2 rows can be used; line 2: invalid JSON") \
            as error:
        load_examples(DatasetSpec(str(path)), objective="sft")
    assert "question/answer" in error.value.hint


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(RagtuneError, match="nope.jsonl: no such file"):
        load_examples(DatasetSpec(str(tmp_path / "nope.jsonl")), objective="sft")
    with pytest.raises(RagtuneError, match="the file has no rows"):
        load_examples(DatasetSpec(str(write_jsonl(tmp_path / "empty.jsonl", [""]))), objective="sft")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(RagtuneError, match="unsupported file type"):
        load_examples(DatasetSpec(str(tmp_path / "data.csv")), objective="sft")


def test_raw_text_for_cpt(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Cats\n\nCats  sleep.\r\n")
    (folder / "sub" / "b.txt").write_text("Dogs bark.")
    (folder / "empty.txt").write_text("  \n")
    (folder / "ignored.pdf").write_bytes(b"%PDF")
    examples, removed = load_examples(DatasetSpec(str(folder)), objective="cpt")
    assert [(e.origin, e.text) for e in examples] == [(f"{folder}/a.md", "# Cats\n\nCats sleep."),
                                                      (f"{folder}/sub/b.txt", "Dogs bark.")]
    assert removed == [{"origin": f"{folder}/empty.txt", "reason": "empty text"}]
    rows = write_jsonl(tmp_path / "texts.jsonl", [{"text": "One."}, {"question": "q", "answer": "a"}])
    examples, removed = load_examples(DatasetSpec(str(rows)), objective="cpt")
    assert [e.text for e in examples] == ["One."] and removed[0]["reason"] == "no text field"
    with pytest.raises(RagtuneError, match="only --objective cpt"):
        load_examples(DatasetSpec(str(folder)), objective="sft")


def test_raft_takes_question_answer_rows_only(tmp_path):
    path = write_jsonl(tmp_path / "raft.jsonl", [{"question": "q?", "answer": "a"},
                                                 {"instruction": "do", "output": "done"}])
    examples, removed = load_examples(DatasetSpec(str(path)), objective="raft")
    assert len(examples) == 1 and removed[0]["reason"] == "not a question/answer row"


def test_kb_needs_cpt_and_documents():
    with pytest.raises(RagtuneError, match="raw text for --objective cpt"):
        load_examples(DatasetSpec("kb"), objective="sft")
    with pytest.raises(RagtuneError) as error:
        load_examples(DatasetSpec("kb"), objective="cpt", knowledge_base=None)
    assert error.value.hint == "run `ragtune ingest` first"
