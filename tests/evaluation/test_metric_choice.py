"""The deciding metric fits the answers (choice, short, long, code), a metric that carries no information on a run
is skipped for the next fitting one, and strategies tied at zero get "inconclusive", never "the cheapest"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation.test_advice import make_results, strategy

from ragtune.demo import demo_questions
from ragtune.evaluation.analysis import analyse
from ragtune.evaluation.metric_choice import answer_kind, choose_metric, looks_like_code, uninformative_reason
from ragtune.evaluation.results import Constraints

CODE_CALLS = Path(__file__).parents[1] / "data" / "code_calls" / "questions.jsonl"


def kind(references: list[str], choices: bool = False) -> str:
    return answer_kind(references, [choices] * len(references))[0]


def test_answer_kinds():
    assert kind(["Paris", "B"], choices=True) == "choice"
    assert kind(["statistics.median([3, 1, 4])", "os.path.join('a', 'b')", "x"]) == "code"
    assert kind(["fifteen hours", "iron oxide dust", "Neil Armstrong"]) == "short"
    assert kind(["word " * 40, "because the virus binds to the ACE2 receptor " * 5]) == "long"


@pytest.mark.parametrize("text, code", [
    ("json.dumps(obj, indent=2, sort_keys=True)", True), ("SELECT id FROM notes WHERE id = 3;", True),
    ("textwrap.fill('The quick brown fox jumps over the lazy dog', width=20)", True), ("user_id", True),
    ("the ACE2 receptor (on lung cells)", False), ("about 5.2 days.", False), ("SARS-CoV-2", False),
])
def test_looks_like_code(text, code):
    assert looks_like_code(text) == code


def test_the_choice_rule_on_the_bundled_and_the_code_data():
    """The measurement BENCHMARKS.md quotes: COVID-QA is short factual prose, the code set is code."""
    covid = [row["answer"] for row in demo_questions()]
    code = [json.loads(line)["answer"] for line in CODE_CALLS.read_text().splitlines()]
    assert kind(covid) == "short" and sum(map(looks_like_code, covid)) <= 5  # of 282: a few accession numbers
    assert kind(code) == "code" and sum(map(looks_like_code, code)) == len(code)


def test_an_informative_metric_is_chosen_and_explained():
    scores = {"base": {"f1": [0.0, 0.2, 0.1]}, "rag": {"f1": [0.5, 0.9, 0.4]}}
    choice = choose_metric(["Paris", "Rome", "Oslo"], [False] * 3, scores)
    assert choice["metric"] == "f1" and choice["answer_kind"] == "short" and not choice["skipped"]
    assert choice["reason"].startswith("F1 fits: the median reference answer is 1 words")


def test_a_metric_at_the_floor_is_skipped_for_the_next_fitting_one():
    references = ["statistics.median([3, 1])", "math.gcd(12, 18)", "json.dumps(x)"]
    scores = {"base": {"chrf": [0.3, 0.5, 0.2], "code_f1": [0.4, 0.6, 0.1]},
              "ft": {"chrf": [0.6, 0.5, 0.7], "code_f1": [0.7, 0.8, 0.2]}}
    assert choose_metric(references, [False] * 3, scores, requested="f1")["metric"] == "chrf"  # f1 absent: skipped
    scores = {name: {**values, "chrf": [0.0, 0.01, 0.0]} for name, values in scores.items()}
    choice = choose_metric(references, [False] * 3, scores)
    assert choice["metric"] == "code_f1"
    assert choice["skipped"] == [{"metric": "chrf", "reason": "every strategy is at the floor (all means ≤ 0.02)"}]
    assert "chrF skipped: every strategy is at the floor" in choice["reason"]


def test_no_variance_and_the_ceiling_carry_no_information():
    assert uninformative_reason({"a": [1.0, 1.0], "b": [1.0, 0.99]}).startswith("every strategy is at the ceiling")
    assert uninformative_reason({"a": [0.3, 0.6], "b": [0.3, 0.6]}) == \
        "every strategy gave the same score on every question"
    assert uninformative_reason({"a": [0.3, 0.6], "b": [0.6, 0.3]}) is None


def test_strategies_tied_at_zero_are_inconclusive_not_the_cheapest():
    """The issue's case: every strategy scores 0 on every fitting metric; the cheapest must not 'win'."""
    names = ["base", "rag", "ft"]
    rows = [{"id": f"q{i}", "question": "?", "reference": f"lib.load(repo='org/r{i}', model='M{i}')",
             "answers": {name: {"answer": "I do not know", "latency_s": 0.5,
                                "scores": {metric: 0.0 for metric in ("chrf", "code_f1", "code_exact_match", "rougeL",
                                                                      "f1", "exact_match")}}
                         for name in names}}
            for i in range(8)]
    results = make_results({name: strategy(0.0, retrieval=name == "rag", cost=0.01 * (index + 1))
                            for index, name in enumerate(names)}, per_question=rows, n=8)
    analysed = analyse(results, Constraints())
    assert analysed.metric_choice.metric is None and analysed.metric_choice.answer_kind == "code"
    assert [skipped.metric for skipped in analysed.metric_choice.skipped] == ["chrf", "code_f1", "code_exact_match",
                                                                            "rougeL"]
    advice = analysed.recommendation
    assert advice.verdict == "inconclusive" and advice.strategy is None
    assert advice.headline == "Inconclusive: no metric that fits these answers tells the strategies apart"
    assert any("stronger base model" in reason.text for reason in advice.what_would_decide)
    assert analysed.significance == []


def test_one_strategy_or_no_questions_still_get_a_metric():
    assert uninformative_reason({"rag": [0.3, 0.6]}) is None  # nothing to compare with is not "no variance"
    assert answer_kind([], []) == ("short", "there are no test questions")
