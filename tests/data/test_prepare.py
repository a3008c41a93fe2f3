"""prepare_data: duplicates, lengths, seeded splits, leakage, mixture weights, the report and its files."""

from __future__ import annotations

import pytest
from data_helpers import qa_rows, write_jsonl

from ragtune.data import (DatasetSpec, PrepareOptions, is_prepared_dir, parse_dataset_spec, prepare_data,
                          read_prepared, token_length, write_prepared)
from ragtune.errors import RagtuneError


def prepare(tokenizer, train, **options):
    val, test = options.pop("val", None), options.pop("test", None)
    return prepare_data([parse_dataset_spec(str(t)) for t in train], options=PrepareOptions(**options),
                        tokenizer=tokenizer, val=val and [DatasetSpec(str(v)) for v in val],
                        test=test and [DatasetSpec(str(t)) for t in test])


def test_exact_and_near_duplicates_name_the_kept_row(tmp_path, chat_tokenizer):
    long_question = " ".join(f"word{i}" for i in range(40))
    rows = qa_rows(5) + [
        {"question": "What is the capital of France?", "answer": "Paris"},
        {"question": "What is the  capital of France?", "answer": "Paris"},  # same once normalised
        {"question": "what is the capital of france", "answer": "paris"},  # same words
        {"question": long_question, "answer": "yes"},
        {"question": long_question.replace("word17", "other"), "answer": "yes"},
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = prepare(chat_tokenizer, [path], val_fraction=0)
    assert data.report.duplicates == [
        {"origin": f"{path}:7", "kind": "exact", "kept": f"{path}:6"},
        {"origin": f"{path}:8", "kind": "near", "kept": f"{path}:6"},
        {"origin": f"{path}:10", "kind": "near", "kept": f"{path}:9"},
    ]
    assert len(data.train) == 7
    assert data.report.removal_reasons() == {"near duplicate": 2, "exact duplicate": 1}
    assert data.report.stages == {"loaded": 10, "after_cleaning": 7, "after_length": 7}


def test_questions_sharing_a_passage_are_not_duplicates(tmp_path, chat_tokenizer):
    passage = " ".join(f"fact{i}" for i in range(150))
    rows = [{"question": f"question {word}?", "answer": f"answer {word}", "context": passage}
            for word in ("alpha", "beta", "gamma")]
    data = prepare(chat_tokenizer, [write_jsonl(tmp_path / "ctx.jsonl", rows)], val_fraction=0,
                   max_seq_length=4096)
    assert len(data.train) == 3 and not data.report.duplicates


def test_long_rows_and_length_outliers_are_removed(tmp_path, chat_tokenizer):
    rows = qa_rows(120) + [{"id": "outlier", "question": "word " * 35, "answer": "long"},
                           {"id": "too-long", "question": "word " * 300, "answer": "longer"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    data = prepare(chat_tokenizer, [path], val_fraction=0, max_seq_length=256)
    removed = {row["origin"]: row for row in data.report.removed}
    assert removed[f"{path}:122"]["reason"] == "longer than max_seq_length"
    assert removed[f"{path}:122"]["detail"].endswith("tokens > 256")
    assert removed[f"{path}:121"]["reason"] == "length outlier"
    assert "99th percentile" in removed[f"{path}:121"]["detail"]
    assert all(token_length(e, chat_tokenizer) <= 256 for e in data.train)
    assert set(data.report.lengths) == {"p50", "p95", "max"}
    few = prepare(chat_tokenizer, [write_jsonl(tmp_path / "few.jsonl", rows[:50] + rows[120:121])], val_fraction=0)
    assert not [row for row in few.report.removed if row["reason"] == "length outlier"]  # too few rows to judge


def test_seeded_split_is_deterministic_and_changes_with_the_seed(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", qa_rows(50))
    first = prepare(chat_tokenizer, [path], val_fraction=0.2, test_fraction=0.1, seed=7)
    again = prepare(chat_tokenizer, [path], val_fraction=0.2, test_fraction=0.1, seed=7)
    other = prepare(chat_tokenizer, [path], val_fraction=0.2, test_fraction=0.1, seed=8)
    assert (len(first.train), len(first.val), len(first.test)) == (35, 10, 5)
    assert [e.id for e in first.val] == [e.id for e in again.val] and [e.id for e in first.train] == [
        e.id for e in again.train]
    assert {e.id for e in first.val} != {e.id for e in other.val}
    assert {e.id for e in first.train + first.val + first.test} == {f"q{i}" for i in range(50)}


def test_explicit_val_is_not_split_off_and_leakage_is_dropped_or_flagged(tmp_path, chat_tokenizer):
    rows = qa_rows(20)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    planted = {"question": rows[3]["question"].upper(), "answer": rows[3]["answer"]}  # a near duplicate
    val = write_jsonl(tmp_path / "val.jsonl", [planted] + qa_rows(2, prefix="v"))
    dropped = prepare(chat_tokenizer, [train], val=[val])
    assert len(dropped.train) == 20 and len(dropped.val) == 2
    assert dropped.report.leakage == [{"origin": f"{val}:1", "split": "val", "kind": "near",
                                       "train_origin": f"{train}:4", "action": "dropped"}]
    assert {"origin": f"{val}:1", "reason": "repeats a train row",
            "detail": f"near duplicate of {train}:4"} in dropped.report.removed
    flagged = prepare(chat_tokenizer, [train], val=[val], leakage="flag")
    assert len(flagged.val) == 3 and flagged.report.leakage[0]["action"] == "flagged"
    assert any("leakage=flag" in warning for warning in flagged.report.warnings)


def test_mixture_weights_repeat_or_subsample_training_rows(tmp_path, chat_tokenizer):
    facts = write_jsonl(tmp_path / "facts.jsonl", qa_rows(10, prefix="f"))
    style = write_jsonl(tmp_path / "style.jsonl", qa_rows(10, prefix="s"))
    extra = write_jsonl(tmp_path / "extra.jsonl", qa_rows(10, prefix="e"))
    specs = [f"{facts}:weight=2", f"{style}:weight=0.5:task=style", f"{extra}:weight=1.5:task=extra"]
    data = prepare(chat_tokenizer, specs, val_fraction=0, seed=1)
    assert data.report.splits == {"train": 30, "val": 0, "test": 0, "train_weighted": 20 + 5 + 15}
    assert data.report.mixture == {"default": 20, "extra": 15, "style": 5}
    ids = [e.id for e in data.train]
    assert all(ids.count(f"f{i}") == 2 for i in range(10))
    assert len({i for i in ids if i.startswith("s")}) == 5
    assert sorted(ids.count(f"e{i}") for i in range(10)) == [1] * 5 + [2] * 5
    assert [e.id for e in prepare(chat_tokenizer, specs, val_fraction=0, seed=1).train] == ids
    assert [e.id for e in prepare(chat_tokenizer, specs, val_fraction=0, seed=2).train] != ids


def test_few_rows_and_no_validation_are_warned_about(tmp_path, chat_tokenizer):
    data = prepare(chat_tokenizer, [write_jsonl(tmp_path / "small.jsonl", qa_rows(12))], val_fraction=0)
    assert any(w.startswith("only 12 training rows") for w in data.report.warnings)
    assert any(w.startswith("no validation rows") for w in data.report.warnings)


def test_nothing_left_is_an_error_that_summarises_the_reasons(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "word " * 80, "answer": "a"}] * 3 + ["oops"])
    with pytest.raises(RagtuneError, match=r"no training rows are left: 4 rows were removed \(exact duplicate: 2, "
                                           r"invalid JSON: 1, longer than max_seq_length: 1\)"):
        prepare(chat_tokenizer, [path], max_seq_length=32)


def test_too_few_rows_to_split(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "two.jsonl", qa_rows(2))
    with pytest.raises(RagtuneError, match="only 2 training rows: too few to split off"):
        prepare(chat_tokenizer, [path], val_fraction=0.1, test_fraction=0.1)


def test_options_are_validated():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction must be below 1"):
        PrepareOptions(val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(ValueError, match="Extra inputs"):
        PrepareOptions(shuffle=True)


def test_write_and_read_prepared(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", qa_rows(30) + ["bad line"])
    data = prepare(chat_tokenizer, [path], test_fraction=0.1)
    out = write_prepared(data, tmp_path / "out")
    assert is_prepared_dir(out) and not is_prepared_dir(tmp_path)
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "val.jsonl", "test.jsonl", "report.json", "report.md"}
    again = read_prepared(out)
    assert again.train == data.train and again.val == data.val and again.test == data.test
    assert again.report == data.report
    markdown = (out / "report.md").read_text()
    assert "| invalid JSON | 1 |" in markdown and f"`{path}:31`: invalid JSON" in markdown
    with pytest.raises(RagtuneError, match="not a prepared dataset"):
        read_prepared(tmp_path)


def test_cpt_from_the_knowledge_base(project, corpus, chat_tokenizer, tmp_path):
    project.ingest([str(corpus)])
    notes = tmp_path / "notes.md"
    notes.write_text("Notes about " + "long text " * 400)
    data = prepare_data([DatasetSpec("kb"), DatasetSpec(str(notes), task="notes")],
                        options=PrepareOptions(objective="cpt", val_fraction=0, max_seq_length=64),
                        tokenizer=chat_tokenizer, knowledge_base=project.kb)
    assert sorted(e.origin for e in data.train) == sorted(
        ["kb:animals/cats.md", "kb:animals/dogs.txt", "kb:space/mars.txt", "kb:space/moon.html", str(notes)])
    assert all(e.text and not e.messages for e in data.train)
    assert data.report.lengths["max"] > 64  # texts are cut into blocks later, never removed for length
    assert "Neil Armstrong" in next(e.text for e in data.train if e.origin == "kb:space/moon.html")
