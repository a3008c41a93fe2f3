"""`compare` and `eval` end to end on a tiny Llama (real MiniLM retrieval): the results schema, reproducibility,
resume, knowledge update and the command contract."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.errors import RagtuneError
from ragtune.evaluation.compare import run_compare
from ragtune.evaluation.experiment import load_experiment
from corpus_files import FACTS
from tiny_models import build_tiny_llama

METRICS = {"exact_match", "f1", "rouge1", "rouge2", "rougeL", "bleu", "similarity", "chrf", "code_f1",
           "code_exact_match"}
RETRIEVAL_METRICS = {"recall_at_k", "mrr", "groundedness"}
TINY_BUDGET = {"sft_max_steps": 4, "cpt_max_steps": 2, "raft_max_steps": 2, "batch_size": 4, "max_seq_length": 512,
               "max_new_tokens": 8}


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-generator"))


@pytest.fixture
def dataset(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = []
    for name, facts in FACTS.items():
        sentences = " ".join(f"{question.rstrip('?')}: {answer}." for question, answer in facts)
        (docs / name).write_text(f"Notes about {name[:-4]}. {sentences}", encoding="utf-8")
        rows += [{"id": f"{name[:-4]}-{i}", "question": q, "answer": a, "source": name}
                 for i, (q, a) in enumerate(facts)]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return docs, questions


def experiment(dataset, tiny_generator, **overrides):
    docs, questions = dataset
    return load_experiment(None, {"docs": str(docs), "train": str(questions), "model": str(tiny_generator),
                                  "budget": TINY_BUDGET, "test_fraction": 0.3, "k": 2, "raft_k": 2, **overrides})


def test_compare_results_schema_reproducibility_and_resume(dataset, tiny_generator, embedder, monkeypatch,
                                                           tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    settings = experiment(dataset, tiny_generator, strategies=["base", "rag", "ft", "ft+rag", "raft", "ft-docs"],
                          price_per_hour=2.0)
    # Trained in this process: the children would not see the patched embedder.
    results = run_compare(settings, tmp_path / "out", train_in_child=False)

    assert set(results.strategies) == {"base", "rag", "ft", "ft+rag", "raft", "ft-docs"}
    for name, entry in results.strategies.items():
        expected = METRICS | (RETRIEVAL_METRICS if entry.uses_retrieval else set())
        assert expected <= set(entry.metrics), name
        for metric in entry.metrics.values():
            assert metric.ci_low <= metric.value <= metric.ci_high
        assert entry.latency.p95_s >= entry.latency.p50_s > 0
        assert entry.cost.cost_per_1000_questions > 0
        assert (entry.cost.train_seconds is None) == (name in ("base", "rag"))
    assert results.strategies["rag"].cost.prompt_tokens_per_question > \
        results.strategies["base"].cost.prompt_tokens_per_question  # context costs tokens
    assert results.recommendation.verdict in ("recommended", "inconclusive")
    assert results.metric_choice.answer_kind == "short"
    assert results.metric_choice.answer_kinds == {"prose": results.test_set.n}
    deciding = results.deciding_metric
    assert deciding is not None or results.recommendation.verdict == "inconclusive"
    if deciding:
        assert len(results.significance) == 15  # every pair of six strategies on the deciding metric
        assert {entry.metric for entry in results.significance} == {deciding}
    assert len(results.per_question) == results.test_set.n
    for name in ("results.json", "report.html", "report.md"):
        assert (tmp_path / "out" / name).is_file()

    again = run_compare(settings, tmp_path / "out", resume=True, train_in_child=False)
    assert {"questions", "ingest", "train-sft", "eval-rag"} <= set(again.resumed_stages)
    assert again.strategies["ft"].metrics == results.strategies["ft"].metrics

    fresh = run_compare(settings, tmp_path / "fresh", train_in_child=False)
    for name in results.strategies:
        assert fresh.strategies[name].metrics == results.strategies[name].metrics, name


def test_knowledge_update_measures_absorption_and_forgetting(dataset, tiny_generator, embedder, monkeypatch,
                                                             tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    settings = experiment(dataset, tiny_generator, strategies=["base", "rag", "ft"], update_split=0.5)
    results = run_compare(settings, tmp_path / "out")
    update = results.knowledge_update

    assert update.new_documents == 2 and update.new_questions > 0 and update.old_questions > 0
    strategies = update.strategies
    assert strategies["base"].absorb_seconds == 0.0
    assert strategies["rag"].absorb_seconds > 0 and "ingest" in strategies["rag"].how
    assert strategies["ft"].absorb_seconds > 0 and "training" in strategies["ft"].how
    for entry in strategies.values():
        assert METRICS <= set(entry.new) and set(entry.new) == set(entry.old_after)  # every metric, whichever decides
        assert entry.forgetting("rougeL") == pytest.approx(entry.old_before["rougeL"] - entry.old_after["rougeL"])


def test_knowledge_update_with_a_metric_other_than_f1_reports_its_forgetting(dataset, tiny_generator, embedder,
                                                                                monkeypatch, tmp_path):
    """Once a crash at the very end: the update measured only exact match and F1, so forgetting was None."""
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    settings = experiment(dataset, tiny_generator, strategies=["base", "rag"], update_split=0.5,
                          primary_metric="similarity")
    results = run_compare(settings, tmp_path / "out")
    assert results.metric_choice.requested == "similarity"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "new questions similarity" in report and "| forgetting |" in report


def test_another_metric_or_constraint_reuses_every_stored_answer(dataset, tiny_generator, embedder, monkeypatch,
                                                                 tmp_path):
    from ragtune.evaluation.advise import readvise
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    first = run_compare(experiment(dataset, tiny_generator, strategies=["base", "rag"]), tmp_path / "out")
    again = run_compare(experiment(dataset, tiny_generator, strategies=["base", "rag"], primary_metric="rougeL",
                                   must_cite=True, price_per_hour=1.0), tmp_path / "out", resume=True)
    assert set(again.resumed_stages) == {"questions", "ingest", "eval-base", "eval-rag"}
    assert again.per_question == first.per_question
    assert again.metric_choice.metric == "rougeL" or again.metric_choice.skipped[0].metric == "rougeL"
    assert again.recommendation.excluded.get("base", "").startswith("it answers closed book")

    advised = readvise(tmp_path / "out", metric="chrf", constraints={"must_cite": False})
    assert advised.metric_choice.requested == "chrf" and advised.constraints.must_cite is False
    assert advised.per_question == first.per_question
    assert "chrF" in (tmp_path / "out" / "report.html").read_text()

    command = CliRunner().invoke(app, ["advise", str(tmp_path / "out"), "--metric", "rougeL", "--latency-target",
                                       "100", "--json"])
    assert command.exit_code == 0, command.output
    advised = json.loads(command.stdout)
    assert advised["metric_choice"]["requested"] == "rougeL" and advised["constraints"]["latency_p95_s"] == 100
    refused = CliRunner().invoke(app, ["advise", str(tmp_path / "out"), "--metric", "bleu-4"])
    assert refused.exit_code == 1 and "unknown deciding metric: bleu-4" in refused.output
    missing = CliRunner().invoke(app, ["advise", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no comparison results" in missing.output


def test_changed_settings_are_not_resumed_and_an_existing_output_needs_resume(dataset, tiny_generator, embedder,
                                                                                 monkeypatch, tmp_path):
    from ragtune.evaluation.stages import StageCache

    cache = StageCache(tmp_path, {"a": 1}, "fingerprint-1", resume=False)
    cache.run("questions", lambda: {"n": 1})
    with pytest.raises(RagtuneError, match="--resume"):
        StageCache(tmp_path, {"a": 1}, "fingerprint-1", resume=False)
    with pytest.raises(RagtuneError, match="different settings"):
        StageCache(tmp_path, {"a": 2}, "fingerprint-2", resume=True)


def test_eval_command_contract(dataset, tiny_generator, embedder, monkeypatch, tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    docs, questions = dataset
    project = tmp_path / "project"
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "--project", str(project)]).exit_code == 0
    result = runner.invoke(app, ["eval", "--test", str(questions), "--strategy", "rag", "--model",
                                 str(tiny_generator), "--k", "2", "--project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["strategy"] == "rag" and data["n"] == 10
    assert METRICS | RETRIEVAL_METRICS <= set(data["metrics"])
    assert {"id", "question", "reference", "answer"} <= set(data["per_question"][0])

    refused = runner.invoke(app, ["eval", "--test", str(questions), "--strategy", "ft", "--project", str(project)])
    assert refused.exit_code == 1 and "--model RUN_DIR" in refused.output


def test_compare_command_reads_an_experiment_file_and_flags_override_it(dataset, tiny_generator, embedder,
                                                                        monkeypatch, tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    docs, questions = dataset
    settings = tmp_path / "experiment.yaml"
    settings.write_text(f"docs: {docs}\ntrain: {questions}\nmodel: {tiny_generator}\nstrategies: [base, rag, ft]\n"
                        f"test_fraction: 0.3\nbudget: {json.dumps(TINY_BUDGET)}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["compare", "--experiment", str(settings), "--strategies", "base,rag",
                                      "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert list(results["strategies"]) == ["base", "rag"]  # the flag replaced the file's list
    assert json.loads((tmp_path / "out" / "results.json").read_text())["strategies"].keys() == {"base", "rag"}

    bad = CliRunner().invoke(app, ["compare", "--experiment", str(settings), "--strategies", "base,rga",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "unknown strategies: rga" in bad.output
    for flag, value, message in (("--metric", "rogue", "unknown deciding metric: rogue"),
                                 ("--method", "lorra", "unknown method: lorra")):
        refused = CliRunner().invoke(app, ["compare", "--experiment", str(settings), flag, value,
                                           "--out", str(tmp_path / "refused")])
        assert refused.exit_code == 1 and message in refused.output and "choose among" in refused.output
        assert not (tmp_path / "refused").exists()  # refused before any work

    unpriced = CliRunner().invoke(app, ["compare", "--experiment", str(settings), "--budget-per-1000", "0.5",
                                        "--out", str(tmp_path / "unpriced")])
    assert unpriced.exit_code == 1 and "--price-per-hour" in unpriced.output
    assert not (tmp_path / "unpriced").exists()


def test_evaluation_retrieves_once_per_question(dataset, tiny_generator, project, monkeypatch):
    from ragtune.evaluation.runner import RANKING_DEPTH, evaluate
    from ragtune.evaluation.test_set import load_test_set
    from ragtune.knowledge.retrieval import Retriever
    from ragtune.strategies import STRATEGIES

    docs, questions = dataset
    project.ingest([str(docs)])
    calls = []
    search_timed = Retriever.search_timed
    monkeypatch.setattr(Retriever, "search_timed", lambda self, queries, k=None, *args, **kwargs: calls.append(k)
                        or search_timed(self, queries, k, *args, **kwargs))
    test = load_test_set(questions)[:4]
    result = evaluate(project, test, STRATEGIES["rag"], model=str(tiny_generator), k=2)
    assert calls == [RANKING_DEPTH] * len(test)  # the prompt's k = 2 passages come from the same ranking
    assert all(len(row["passages"]) <= 2 for row in result.per_question)
    assert all(row["scores"]["recall_at_k"] in (0.0, 1.0) for row in result.per_question)


def test_compare_without_training_questions_synthesizes_them_and_says_so(dataset, tiny_generator, embedder,
                                                                         monkeypatch, tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase
    from test_synthesis import QuestionWriter

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    from ragtune.synthesis.questions import write_questions

    writer = QuestionWriter()  # the tiny random Llama writes no question; the strategies still answer with it
    monkeypatch.setattr("ragtune.synthesis.run.write_questions", lambda engine, items: write_questions(writer, items))
    docs, _ = dataset
    settings = load_experiment(None, {"docs": str(docs), "model": str(tiny_generator), "strategies": ["base", "rag"],
                                      "synthesize": 12, "budget": TINY_BUDGET, "test_fraction": 0.3, "k": 2})
    results = run_compare(settings, tmp_path / "out", train_in_child=False)
    synthetic = results.test_set.synthetic
    assert synthetic["planned"] == writer.items > 0 and synthetic["kept"] == results.test_set.n + \
        results.test_set.train_questions
    assert "synthetic" in (tmp_path / "out" / "report.md").read_text()
    rows = [json.loads(line) for line in (tmp_path / "out" / "data" / "synthetic.jsonl").read_text().splitlines()]
    assert rows and all("chunk_id" not in row and row["source"] for row in rows)

    again = run_compare(settings, tmp_path / "out", resume=True, train_in_child=False)
    assert "synthesize" in again.resumed_stages and writer.items == synthetic["planned"]  # not written twice


def test_synthetic_questions_added_to_a_human_set_train_with_it_and_are_scored_apart(dataset, tiny_generator,
                                                                                     embedder, monkeypatch, tmp_path):
    from ragtune.knowledge.knowledge_base import KnowledgeBase
    from ragtune.synthesis.questions import write_questions
    from test_synthesis import QuestionWriter

    monkeypatch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
    writer = QuestionWriter()
    monkeypatch.setattr("ragtune.synthesis.run.write_questions", lambda engine, items: write_questions(writer, items))
    human_only = run_compare(experiment(dataset, tiny_generator, strategies=["base", "ft"]), tmp_path / "human",
                             train_in_child=False)
    settings = experiment(dataset, tiny_generator, strategies=["base", "ft"], synthesize=16)
    results = run_compare(settings, tmp_path / "out", train_in_child=False)

    synthetic = results.test_set.synthetic
    assert synthetic["added"] and synthetic["train_questions"] > 0 and synthetic["test_questions"] > 0
    # the human test questions decide, as without synthetic ones; the synthetic ones only join training
    assert [row.id for row in results.per_question] == [row.id for row in human_only.per_question]
    assert results.test_set.train_questions == human_only.test_set.train_questions + synthetic["train_questions"]
    data = tmp_path / "out" / "data"
    trained_on = {json.loads(line)["question"] for line in (data / "train.jsonl").read_text().splitlines()}
    scored_apart = [json.loads(line) for line in (data / "synthetic_test.jsonl").read_text().splitlines()]
    assert len(scored_apart) == synthetic["test_questions"] and not trained_on & {row["question"] for row in scored_apart}
    for strategy in results.strategies.values():
        assert set(strategy.synthetic_metrics) >= {"f1", "rougeL"} and strategy.metrics.keys() >= {"f1"}
    assert human_only.strategies["base"].synthetic_metrics == {}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Synthetic questions (scored apart)" in report and "they never decide" in report
    assert "the human test questions decide" in report
    assert "Synthetic questions (scored apart)" in (tmp_path / "out" / "report.html").read_text()
    assert "Synthetic questions" not in (tmp_path / "human" / "report.md").read_text()

    again = run_compare(settings, tmp_path / "out", resume=True, train_in_child=False)
    assert {"synthesize", "eval-base-synthetic", "eval-ft-synthetic"} <= set(again.resumed_stages)
