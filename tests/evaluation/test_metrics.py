"""Exact match and token F1 against hand-computed values."""

from __future__ import annotations

import pytest

from ragtune.evaluation.metrics import exact_match, normalize_answer, token_f1


def test_normalisation_drops_case_punctuation_articles_and_extra_spaces():
    assert normalize_answer("  The  Incubation period, is 5 days! ") == "incubation period is 5 days"


@pytest.mark.parametrize("prediction, reference, expected", [
    ("The red box.", "red box", 1.0),
    ("red", "red box", 0.0),
    ("", "", 1.0),
])
def test_exact_match(prediction, reference, expected):
    assert exact_match(prediction, reference) == expected


@pytest.mark.parametrize("prediction, reference, expected", [
    ("five days", "five days", 1.0),
    ("about five days", "five days", 2 * (2 / 3) * 1 / (2 / 3 + 1)),  # precision 2/3, recall 1 → 0.8
    ("five", "five days", 2 * 1 * 0.5 / 1.5),  # precision 1, recall 1/2 → 2/3
    ("ten weeks", "five days", 0.0),
    ("", "five days", 0.0),
    ("the the", "five days", 0.0),
])
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)
