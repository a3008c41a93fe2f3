"""The verdict follows the numbers: constraints, Holm-corrected significance, "inconclusive" when the test set
cannot separate the strategies, ties broken by update speed and cost."""

from __future__ import annotations

import pytest

from ragtune.evaluation.advice import recommend
from ragtune.evaluation.results import Constraints, Results, resolve

PRICE_PER_HOUR = 2.0
DESCRIPTIONS = {"base": "closed book", "rag": "retrieval", "ft": "fine-tuned, closed book",
                "ft-docs": "continued pre-training on the documents", "ft+rag": "fine-tuned with retrieval",
                "raft": "RAFT with retrieval"}


def strategy(f1: float, *, retrieval: bool, cost: float = 0.1, p95: float = 1.0, train_seconds: float | None = None,
             training_cost: float | None = None, half_width: float = 0.05, curve: list | None = None) -> dict:
    """One strategy's entry with the chosen numbers; exact match is F1 minus 0.1."""
    def measure(value: float) -> dict:
        return {"value": value, "ci_low": round(value - half_width, 4), "ci_high": round(value + half_width, 4)}

    entry = {
        "description": "", "model": "tiny", "uses_retrieval": retrieval, "k": 4 if retrieval else 0,
        "metrics": {"f1": measure(f1), "exact_match": measure(max(f1 - 0.1, 0.0))},
        "cost": {"train_seconds": train_seconds, "train_peak_memory_gb": 2.5 if train_seconds else None,
                 "trainable_parameters": 1_000_000 if train_seconds else None,
                 "adapter_mb": 4.0 if train_seconds else None, "index_seconds": 3.2 if retrieval else None,
                 "index_mb": 1.5 if retrieval else None, "prompt_tokens_per_question": 900.0 if retrieval else 60.0,
                 "completion_tokens_per_question": 12.0, "cost_per_1000_questions": cost,
                 "machine_seconds_per_1000_questions": cost / PRICE_PER_HOUR * 3600, "training_cost": training_cost},
        "latency": {"p50_s": p95 / 2, "p95_s": p95, "mean_s": p95 / 1.8, "tokens_per_second": 40.0,
                    "samples_s": [p95 / 4, p95 / 2, p95 / 2, p95 * 0.7, p95]},
    }
    if curve:
        entry["training_curve"] = curve
    return entry


def make_results(strategies: dict[str, dict], significance: list[tuple] = (), knowledge_update: dict | None = None,
                 constraints: dict | None = None, per_question: list[dict] | None = None, n: int = 400,
                 sd: float = 0.1, price_per_hour: float = PRICE_PER_HOUR, ci_half: float = 0.02) -> Results:
    """Valid results; `significance` as (a, b, difference, p) tuples on F1 over `n` questions whose per-question
    differences have SD `sd`, intervals difference ± `ci_half`, Holm-adjusted (the defaults make a test set that
    shows strategies within 0.05 of each other equivalent)."""
    from ragtune.evaluation.statistics import holm_adjust

    for name, entry in strategies.items():
        entry["description"] = DESCRIPTIONS.get(name, name)
    adjusted = holm_adjust([p for *_, p in significance])
    data = {
        "schema_version": 2, "created": "2026-11-25T10:00:00+00:00", "seed": 7,
        "config": {"model": "tiny", "method": "lora", "k": 4, "docs": "docs/", "train": "train.jsonl",
                   "test": "test.jsonl", "price_per_hour": price_per_hour, "quick": True},
        "constraints": constraints or {"knowledge_changes": "monthly", "must_cite": False},
        "metric_choice": {"metric": "f1", "answer_kind": "short", "reason": "F1 fits: short answers",
                          "candidates": ["f1", "exact_match"]},
        "test_set": {"n": n}, "strategies": strategies,
        "significance": [{"a": a, "b": b, "metric": "f1", "n": n, "mean_difference": difference, "sd_difference": sd,
                          "ci_low": difference - ci_half, "ci_high": difference + ci_half, "p_value": p,
                          "p_adjusted": p_adjusted, "test": "paired_bootstrap", "significant": p_adjusted < 0.05}
                         for (a, b, difference, p), p_adjusted in zip(significance, adjusted)],
        "per_question": per_question or [],
    }
    if knowledge_update:
        data["knowledge_update"] = knowledge_update
    return Results.model_validate(data)


def update_entry(seconds: float, new: float, before: float, after: float, how: str) -> dict:
    return {"absorb_seconds": seconds, "absorb_peak_memory_gb": None, "how": how, "new": {"f1": new},
            "old_before": {"f1": before}, "old_after": {"f1": after}}


def advise(results: Results, **constraints):
    """recommend(), checking that every reason cites evidence that exists in the results."""
    advice = recommend(results, Constraints(**constraints))
    for reason in advice.reasons + advice.what_would_decide:
        assert reason.evidence, reason.text
        for path in reason.evidence:
            resolve(results, path)
    return advice


def texts(advice) -> str:
    return "\n".join(reason.text for reason in advice.reasons + advice.what_would_decide)


def test_rag_clearly_best_is_recommended_with_its_numbers():
    results = make_results({"base": strategy(0.10, retrieval=False), "rag": strategy(0.41, retrieval=True),
                            "ft": strategy(0.22, retrieval=False, train_seconds=600, training_cost=0.33)},
                           significance=[("rag", "base", 0.31, 0.0001), ("rag", "ft", 0.19, 0.002)])
    advice = advise(results)
    assert advice.strategy == "rag"
    assert "F1 of the 3 strategies considered: 0.41 [0.36, 0.46] vs 0.22 for ft, 0.10 for base" in texts(advice)
    assert "significantly better than ft on F1: 0.41 vs 0.22 (difference +0.19, CI [+0.17, +0.21], p = 0.002, Holm-adjusted p = 0.002)" \
        in texts(advice)
    assert advice.excluded == {}


def test_ft_significantly_best_with_knowledge_that_never_changes():
    results = make_results({"rag": strategy(0.30, retrieval=True),
                            "ft": strategy(0.52, retrieval=False, train_seconds=900, training_cost=0.5)},
                           significance=[("rag", "ft", -0.22, 0.001)])
    advice = advise(results, knowledge_changes="never")
    assert advice.strategy == "ft"
    assert "difference +0.22, CI [+0.20, +0.24], p = 0.001" in texts(advice)  # the a/b order of the test flipped
    assert "ft's training (15.0 min) is paid once" in texts(advice)


@pytest.mark.parametrize("rag_cost, ft_cost, expected", [(0.05, 0.20, "rag"), (0.30, 0.08, "ft")])
def test_tie_goes_to_the_cheaper_strategy(rag_cost, ft_cost, expected):
    results = make_results({"rag": strategy(0.42, retrieval=True, cost=rag_cost),
                            "ft": strategy(0.40, retrieval=False, cost=ft_cost, train_seconds=300, training_cost=0.2)},
                           significance=[("rag", "ft", 0.02, 0.41)])
    advice = advise(results)
    assert advice.strategy == expected
    assert "ft is not significantly worse than rag on F1: 0.40 [0.35, 0.45] vs 0.42" in texts(advice)
    cheaper, dearer = (f"{rag_cost:.2f}", f"{ft_cost:.2f}")[::1 if expected == "rag" else -1]
    assert f"{expected} is the cheapest: ${cheaper} per 1,000 questions" in texts(advice)
    assert f"${dearer} per 1,000 questions" in texts(advice)


def test_without_a_price_the_tie_is_broken_on_machine_time():
    results = make_results({"rag": strategy(0.42, retrieval=True, cost=0.05),
                            "ft": strategy(0.40, retrieval=False, cost=0.20, train_seconds=300, training_cost=0.2)},
                           significance=[("rag", "ft", 0.02, 0.41)], price_per_hour=0.0)
    advice = advise(results)
    assert advice.strategy == "rag"
    assert ("rag is the cheapest: 90 s per 1,000 questions and no training, vs ft 6.0 min per 1,000 questions "
            "and 5.0 min training") in texts(advice)
    assert "$" not in texts(advice)


def test_training_cost_breaks_a_tie_in_cost_per_question():
    results = make_results({"ft": strategy(0.40, retrieval=False, cost=0.1, train_seconds=900, training_cost=1.5),
                            "raft": strategy(0.41, retrieval=True, cost=0.1, train_seconds=300, training_cost=0.4)},
                           significance=[("raft", "ft", 0.01, 0.7)])
    assert advise(results).strategy == "raft"


def test_latency_target_excludes_rag_and_quotes_the_numbers():
    results = make_results({"rag": strategy(0.45, retrieval=True, p95=2.4),
                            "ft": strategy(0.30, retrieval=False, p95=0.6, train_seconds=300, training_cost=0.2)},
                           significance=[("rag", "ft", 0.15, 0.001)])
    advice = advise(results, latency_p95_s=1.5)
    assert advice.strategy == "ft"
    assert advice.excluded == {"rag": "p95 latency 2.4 s is above the 1.5 s target"}
    assert "ft meets the constraints: p95 latency 0.6 s within the 1.5 s target." in texts(advice)


def test_budget_excludes_the_expensive_strategy():
    results = make_results({"rag": strategy(0.45, retrieval=True, cost=0.9),
                            "ft+rag": strategy(0.40, retrieval=True, cost=0.3, train_seconds=300)},
                           significance=[("rag", "ft+rag", 0.05, 0.01)])
    advice = advise(results, budget_per_1000=0.5)
    assert advice.strategy == "ft+rag"
    assert advice.excluded["rag"] == "$0.90 per 1,000 questions is above the $0.50 budget"


def test_must_cite_excludes_closed_book_strategies():
    results = make_results({"base": strategy(0.10, retrieval=False), "rag": strategy(0.35, retrieval=True),
                            "ft": strategy(0.50, retrieval=False, train_seconds=300),
                            "ft-docs": strategy(0.45, retrieval=False, train_seconds=900),
                            "raft": strategy(0.38, retrieval=True, train_seconds=600, cost=0.2)},
                           significance=[("raft", "rag", 0.03, 0.5)])
    advice = advise(results, must_cite=True)
    assert set(advice.excluded) == {"base", "ft", "ft-docs"}
    assert all("closed book" in why for why in advice.excluded.values())
    assert advice.strategy == "rag"  # tied with raft, and cheaper
    assert "cites the 4 passages it retrieves" in texts(advice)


def test_daily_changes_favour_the_fastest_absorber_among_tied():
    strategies = {"rag": strategy(0.41, retrieval=True, cost=0.2),
                  "ft": strategy(0.43, retrieval=False, cost=0.1, train_seconds=300, training_cost=0.2)}
    update = {"new_documents": 12, "new_questions": 20, "old_questions": 50,
              "strategies": {"rag": update_entry(2.0, 0.52, 0.41, 0.41, "re-index"),
                             "ft": update_entry(300.0, 0.50, 0.43, 0.39, "retrain on all documents")}}
    results = make_results(strategies, significance=[("ft", "rag", 0.02, 0.45)], knowledge_update=update)
    daily = advise(results, knowledge_changes="daily")
    assert daily.strategy == "rag"
    assert ("absorbing new documents fastest while keeping its F1 on new questions wins: rag 2 s (F1 0.52 on new "
            "questions) vs ft 5.0 min (F1 0.50 on new questions)") in texts(daily)
    assert "rag absorbed the 12 new documents in 2 s (re-index)" in texts(daily)
    assert advise(results, knowledge_changes="monthly").strategy == "ft"  # then only cost breaks the tie


def test_fast_update_that_loses_new_question_accuracy_does_not_win():
    strategies = {"rag": strategy(0.41, retrieval=True), "raft": strategy(0.42, retrieval=True, train_seconds=60)}
    update = {"new_documents": 5, "new_questions": 10, "old_questions": 50,
              "strategies": {"rag": update_entry(1.0, 0.20, 0.41, 0.41, "re-index"),
                             "raft": update_entry(40.0, 0.55, 0.42, 0.40, "re-index")}}
    results = make_results(strategies, significance=[("raft", "rag", 0.01, 0.8)], knowledge_update=update)
    advice = advise(results, knowledge_changes="weekly")
    assert advice.strategy == "raft"
    assert "rag falls below 90% of the best new-question F1 (0.55)" in texts(advice)


def test_daily_changes_without_update_measurement_prefer_retrieval():
    results = make_results({"rag": strategy(0.40, retrieval=True, cost=0.3),
                            "ft": strategy(0.41, retrieval=False, cost=0.1, train_seconds=200)},
                           significance=[("ft", "rag", 0.01, 0.6)])
    advice = advise(results, knowledge_changes="daily")
    assert advice.strategy == "rag"
    assert "update cost was not measured: ft answers closed book and needs retraining" in texts(advice)


def test_without_significance_entries_overlapping_intervals_tie():
    results = make_results({"rag": strategy(0.40, retrieval=True, cost=0.3),
                            "ft": strategy(0.44, retrieval=False, cost=0.1, train_seconds=200),
                            "base": strategy(0.10, retrieval=False, cost=0.05)})
    advice = advise(results)
    assert advice.strategy == "ft"
    assert "rag is not significantly worse than ft" in texts(advice)
    assert "the confidence intervals overlap" in texts(advice)
    assert "significantly better than base" in texts(advice)


def test_nothing_meets_the_latency_target_recommends_the_best_anyway():
    results = make_results({"rag": strategy(0.45, retrieval=True, p95=2.0),
                            "ft": strategy(0.30, retrieval=False, p95=0.9, train_seconds=300)},
                           significance=[("rag", "ft", 0.15, 0.001)])
    advice = advise(results, latency_p95_s=0.5)
    assert advice.strategy == "rag"
    assert set(advice.excluded) == {"rag", "ft"}
    assert "no strategy meets the p95 latency target (the fastest, ft, takes 0.9 s)" in texts(advice)


def test_different_measurements_give_different_reasons():
    first = make_results({"rag": strategy(0.41, retrieval=True), "ft": strategy(0.22, retrieval=False)},
                         significance=[("rag", "ft", 0.19, 0.002)])
    second = make_results({"rag": strategy(0.63, retrieval=True), "ft": strategy(0.35, retrieval=False)},
                          significance=[("rag", "ft", 0.28, 0.0004)])
    first_texts, second_texts = texts(advise(first)), texts(advise(second))
    assert first_texts != second_texts
    assert "0.41" in first_texts and "0.63" in second_texts


def test_constraints_round_trip_and_validate():
    constraints = Constraints(latency_p95_s=1.5, knowledge_changes="weekly", must_cite=True)
    assert Constraints.model_validate(constraints.model_dump()) == constraints
    with pytest.raises(ValueError, match="knowledge_changes"):
        Constraints(knowledge_changes="hourly")
    with pytest.raises(ValueError, match="latency"):
        Constraints.model_validate({"latency": 2})


def test_a_tie_prefers_the_strategies_shown_better_than_the_base_model():
    """The demo's situation: with few test questions a cheap fine-tune ties with RAG, but only RAG beats base."""
    results = make_results({"base": strategy(0.09, retrieval=False, cost=0.01),
                            "rag": strategy(0.17, retrieval=True, cost=0.3),
                            "ft": strategy(0.10, retrieval=False, cost=0.02, train_seconds=90, training_cost=0.05)},
                           significance=[("rag", "base", 0.08, 0.001), ("rag", "ft", 0.07, 0.11),
                                         ("ft", "base", 0.01, 0.6)])
    advice = advise(results)
    assert advice.strategy == "rag"
    assert ("ft is not significantly better than base on F1 (ft 0.10 vs 0.09: difference +0.01, CI [-0.01, +0.03], "
            "p = 0.6, Holm-adjusted p = 0.6), so the tie is settled among those that are: rag.") in texts(advice)


def test_without_any_strategy_beating_base_the_tie_goes_to_cost_as_before():
    results = make_results({"base": strategy(0.14, retrieval=False, cost=0.01),
                            "rag": strategy(0.17, retrieval=True, cost=0.3),
                            "ft": strategy(0.15, retrieval=False, cost=0.02, train_seconds=90, training_cost=0.05)},
                           significance=[("rag", "base", 0.03, 0.2), ("rag", "ft", 0.02, 0.5), ("ft", "base", 0.01, 0.4)])
    advice = advise(results)
    assert advice.strategy == "base" and "better than base" not in texts(advice)
    assert "equivalent on F1" in texts(advice)  # a large test set: every difference within ±0.05


def test_all_tied_on_a_small_test_set_is_inconclusive_and_says_how_many_questions_would_decide():
    from ragtune.evaluation.statistics import required_questions

    results = make_results({"base": strategy(0.12, retrieval=False, cost=0.01),
                            "rag": strategy(0.17, retrieval=True, cost=0.3),
                            "ft": strategy(0.15, retrieval=False, cost=0.02, train_seconds=90, training_cost=0.05,
                                           curve=[{"step": 1, "loss": 2.5}, {"step": 8, "loss": 1.9}])},
                           significance=[("rag", "base", 0.05, 0.2), ("rag", "ft", 0.02, 0.5), ("ft", "base", 0.03, 0.4)],
                           n=30, sd=0.3)
    advice = advise(results)
    assert advice.verdict == "inconclusive" and advice.strategy is None
    assert advice.headline == "Inconclusive: the 3 strategies are not separated on F1"
    assert "the measurements do not decide, so nothing is recommended" in texts(advice)
    needed = required_questions(0.3, 0.02, comparisons=3)
    assert f"To tell rag from ft on F1 (a difference of 0.02, per-question SD 0.30) takes about {needed} test " \
           "questions" in texts(advice)
    assert "this test set has 30" in texts(advice)
    assert "ft trained 8 steps (training loss 2.50 → 1.90)" in texts(advice)
    assert "more steps: run without --quick, and the experiment's budget.sft_max_steps and budget.raft_max_steps " \
           "apply)" in texts(advice)
    # the demo's and a full run's budget: named with the values it had, and no flag that `demo` lacks
    results.config = results.config.model_copy(update={"quick": False,
                                                        "budget": {"sft_max_steps": 40, "raft_max_steps": 6}})
    full = texts(advise(results))
    assert "more steps: raise budget.sft_max_steps and budget.raft_max_steps (now 40 and 6) in an experiment file " \
           "for `ragtune compare --experiment FILE`" in full and "--quick" not in full
    assert "Even the best strategy scores 0.17 on F1: a stronger base model than tiny" in texts(advice)
    assert advice.detectable_difference == pytest.approx((2.394 + 0.8416) * 0.3 / 30 ** 0.5, rel=1e-3)  # z.05/3/2 + z.8


def test_a_win_that_does_not_survive_holm_correction_is_not_a_verdict():
    """The demo's old situation: rag beat base at p = 0.03, one of ten comparisons; corrected, nothing is shown."""
    names = ["base", "rag", "ft", "ft+rag", "raft"]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    significance = [("rag", "base", 0.08, 0.03) if {a, b} == {"rag", "base"} else (a, b, 0.01, 0.5) for a, b in pairs]
    values = {"base": 0.09, "rag": 0.17, "ft": 0.10, "ft+rag": 0.15, "raft": 0.14}
    many = make_results({name: strategy(values[name], retrieval=name in ("rag", "ft+rag", "raft"),
                                        train_seconds=60 if name.startswith(("ft", "raft")) else None)
                         for name in names}, significance=significance, n=30, sd=0.3)
    advice = advise(many)
    assert advice.verdict == "inconclusive"
    assert "p = 0.03, Holm-adjusted p = 0.3" in texts(advice)
    alone = make_results({"base": strategy(0.09, retrieval=False), "rag": strategy(0.17, retrieval=True)},
                         significance=[("rag", "base", 0.08, 0.03)], n=30, sd=0.3)
    assert advise(alone).strategy == "rag"


@pytest.mark.parametrize("rag_f1, ft_f1, difference, expected", [(0.45, 0.30, 0.15, "rag"), (0.30, 0.45, -0.15, "ft")])
def test_the_verdict_follows_the_significant_direction(rag_f1, ft_f1, difference, expected):
    results = make_results({"base": strategy(0.10, retrieval=False),
                            "rag": strategy(rag_f1, retrieval=True),
                            "ft": strategy(ft_f1, retrieval=False, train_seconds=300)},
                           significance=[("rag", "ft", difference, 0.001), ("rag", "base", rag_f1 - 0.1, 0.0001),
                                         ("ft", "base", ft_f1 - 0.1, 0.0001)], n=60, sd=0.3)
    advice = advise(results)
    assert advice.verdict == "recommended" and advice.strategy == expected
    assert advice.headline.startswith(f"Recommended: {expected} (F1 0.45")


def test_equivalent_strategies_on_a_large_test_set_are_decided_by_cost():
    results = make_results({"rag": strategy(0.42, retrieval=True, cost=0.05),
                            "ft": strategy(0.41, retrieval=False, cost=0.20, train_seconds=300)},
                           significance=[("rag", "ft", 0.01, 0.5)], n=2000, sd=0.2)
    advice = advise(results)
    assert advice.verdict == "recommended" and advice.strategy == "rag"
    assert "The test set detects differences of 0.01 and every difference to rag lies within ±0.05" in texts(advice)


def test_differences_seen_but_too_few_questions_to_test_are_inconclusive_not_equivalent():
    """Eight questions: rag right on all of them, the others on none. No test over ten pairs can reach
    significance with eight questions, and the intervals show large differences: never "equivalent, the cheapest"."""
    from ragtune.evaluation.analysis import analyse

    names = ["base", "rag", "ft", "ft+rag", "raft"]
    rows = [{"id": f"q{i}", "question": "?", "reference": "Paris",
             "answers": {name: {"answer": "x", "latency_s": 0.5, "scores": {"f1": 1.0 if name == "rag" else 0.0}}
                         for name in names}} for i in range(8)]
    results = make_results({name: strategy(1.0 if name == "rag" else 0.0, retrieval=name != "base",
                                           cost=0.5 if name == "rag" else 0.01) for name in names},
                           per_question=rows, n=8)
    advice = analyse(results, Constraints()).recommendation
    assert advice.verdict == "inconclusive" and advice.detectable_difference is None
    assert ("With 8 test questions and 10 comparisons no difference can be significant: the paired permutation "
            "test's smallest p-value is 2/2^8 = 0.0078, 0.078 once Holm-corrected; it takes at least 9 questions."
            ) in texts(advice)
