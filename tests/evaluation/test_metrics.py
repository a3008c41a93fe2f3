"""Answer, retrieval and multiple-choice metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.evaluation.metrics import (
    corpus_bleu,
    embedding_similarity,
    exact_match,
    groundedness,
    multiple_choice_correct,
    normalize_answer,
    passage_contains_answer,
    recall_at_k,
    reciprocal_rank,
    rouge_scores,
    sentence_bleu,
    token_f1,
)


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


def test_rouge_with_stemming_and_word_order():
    # Stemmed tokens: prediction "on the mat the cat sat" (cats → cat), reference "the cat sat on the mat".
    # ROUGE-1: all 6 unigrams match (the ×2, cat, sat, on, mat) → P = R = 6/6 → F = 1.0.
    # ROUGE-2: prediction bigrams {on the, the mat, mat the, the cat, cat sat}, reference {the cat, cat sat,
    #   sat on, on the, the mat}: 4 shared of 5 and 5 → F = 0.8.
    # ROUGE-L: longest common subsequence "the cat sat" (or "on the mat") = 3 → P = R = 3/6 → F = 0.5.
    scores = rouge_scores("On the mat, the cats sat.", "The cat sat on the mat")
    assert scores == pytest.approx({"rouge1": 1.0, "rouge2": 0.8, "rougeL": 0.5})
    assert rouge_scores("", "the cat") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_sentence_bleu():
    assert sentence_bleu("The cat sat on the mat.", "The cat sat on the mat.") == 1.0
    assert sentence_bleu("dogs bark loudly", "the cat sat") == 0.0
    # "the cat sat on the mat" vs "the cat sat on a mat": clipped n-gram precisions 5/6 (the, cat, sat, on, mat),
    # 3/5 (the cat, cat sat, sat on), 2/4 (the cat sat, cat sat on), 1/3 (the cat sat on); equal lengths → BP = 1.
    # BLEU = (5/6 · 3/5 · 2/4 · 1/3) ** (1/4) = (1/12) ** (1/4) = 0.5373
    assert sentence_bleu("the cat sat on the mat", "the cat sat on a mat") == pytest.approx((1 / 12) ** 0.25)


def test_corpus_bleu_pools_ngram_counts():
    # Pooled over the pair above and an exact 3-word match: 1-grams (5+3)/(6+3), 2-grams (3+2)/(5+2),
    # 3-grams (2+1)/(4+1), 4-grams (1+0)/(3+0); 9 words each side → BP = 1.
    # BLEU = (8/9 · 5/7 · 3/5 · 1/3) ** (1/4) = (8/63) ** (1/4) = 0.5969
    predictions, references = ["the cat sat on the mat", "a dog barked"], ["the cat sat on a mat", "a dog barked"]
    assert corpus_bleu(predictions, references) == pytest.approx((8 / 63) ** 0.25)
    assert corpus_bleu(references, references) == 1.0
    assert corpus_bleu([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        corpus_bleu(predictions, references[:1])


def test_embedding_similarity(embedder):
    predictions = ["Paris is the capital of France.", "", "Bananas are yellow fruit.", "France's capital is Paris."]
    references = ["Paris is the capital of France."] * 4
    similarities = embedding_similarity(predictions, references, embedder)
    vectors = embedder.encode([predictions[2], references[2]])
    assert similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert similarities[1] == 0.0  # an empty answer is not embedded
    assert similarities[2] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert similarities[3] > 0.8 > similarities[2]
    assert embedding_similarity([], [], embedder) == []


def test_groundedness_is_the_share_of_supported_content_tokens():
    passages = ["Domestic cats sleep for around fifteen hours a day.", "Mars is red."]
    # Normalised answer "cats sleep for fifteen hours on moon"; stopwords for, on dropped →
    # content tokens cats, sleep, fifteen, hours, moon; all but moon occur in the passages → 4/5.
    assert groundedness("Cats sleep for fifteen hours on the Moon.", passages) == pytest.approx(0.8)
    # Negations are content: "cats do not sleep" → cats, not, sleep; "not" is unsupported → 2/3.
    assert groundedness("Cats do not sleep", passages) == pytest.approx(2 / 3)
    # Lexical, not entailment: passage words recombined into a false claim are fully "supported".
    assert groundedness("Mars sleeps? No: Mars cats are red.", passages + ["no"]) == pytest.approx(5 / 6)
    assert groundedness("It is what it is.", passages) is None  # only stopwords
    assert groundedness("Cats sleep", []) is None


def test_passage_contains_answer_matches_whole_normalised_tokens():
    assert passage_contains_answer("Neil Armstrong walked on the Moon in July 1969.", "neil armstrong")
    assert passage_contains_answer("The Moon orbits every 27.3 days.", "27.3 Days")  # both normalise to "273 days"
    assert not passage_contains_answer("Category theory", "cat")
    assert not passage_contains_answer("The cat", "the")  # normalises to nothing


def test_recall_at_k_and_reciprocal_rank():
    ranked, gold = ["d3", "d1", "d7", "d2"], {"d7", "d2"}  # first gold key at rank 3
    assert [recall_at_k(ranked, gold, k) for k in (1, 2, 3, 10)] == [0.0, 0.0, 1.0, 1.0]
    assert reciprocal_rank(ranked, gold) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranked, gold, k=2) == 0.0
    assert recall_at_k(ranked, set(), 4) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(ranked, gold, 0)


@pytest.mark.parametrize("logprobs, answer, expected", [
    ([-5.0, -1.2, -3.3], "London", True),  # argmax is choice 1
    ([-5.0, -1.2, -3.3], "the paris", False),
    ([-5.0, -1.2, -3.3], "B", True),  # letter label of choice 1
    ([-5.0, -1.2, -3.3], "(b)", True),
    ([-1.0, -1.0, -2.0], "A", True),  # a tie goes to the first choice, as numpy's argmax
    ([-1.0, -1.0, -2.0], "London", False),
])
def test_multiple_choice_correct(logprobs, answer, expected):
    assert multiple_choice_correct(logprobs, ["Paris", "London", "Berlin"], answer) is expected


def test_multiple_choice_answer_text_wins_over_letters_and_numbers_are_text():
    assert multiple_choice_correct([-3.0, -1.0], ["B", "A"], "A")  # the text "A" is choice 1, not letter A
    assert multiple_choice_correct([-3.0, -1.0, -2.0], ["1", "2", "3"], "2")
    with pytest.raises(ValueError, match="matches none of the choices"):
        multiple_choice_correct([-3.0, -1.0, -2.0], ["1", "2", "3"], "0")
    with pytest.raises(ValueError, match="matches none"):
        multiple_choice_correct([-1.0, -2.0], ["Paris", "London"], "C")  # only two choices
    with pytest.raises(ValueError, match="3 log-likelihoods for 2 choices"):
        multiple_choice_correct([-1.0, -2.0, -3.0], ["Paris", "London"], "Paris")


# ------------------------------------------------------------------------------------- code and the registry

def test_code_metrics_see_the_parts_squad_normalisation_drops():
    from ragtune.evaluation.metrics import chrf, code_exact_match, code_token_f1, code_tokens

    reference = "json.dumps(obj, indent=2, sort_keys=True)"
    assert code_tokens(reference) == ["json", ".", "dumps", "(", "obj", ",", "indent", "=", "2", ",", "sort_keys",
                                      "=", "True", ")"]
    assert code_exact_match("```python\njson.dumps(obj,indent=2, sort_keys=True)\n```", reference) == 1.0
    assert code_exact_match('`re.sub(r"\\s+", " ", text)`', "re.sub(r'\\s+', ' ', text)") == 1.0
    assert code_exact_match('os.path.join("a", "b")', "os.path.join('a', 'b')") == 1.0  # quote style ignored
    assert code_exact_match("json.dumps(obj, indent=4)", reference) == 0.0
    near, far = code_token_f1("json.dumps(obj, indent=2)", reference), code_token_f1("pickle.load(f)", reference)
    assert 0.5 < near < 1.0 and far < near
    assert chrf("json.dumps(obj, indent=2)", reference) > chrf("the answer is json", reference) > 0
    # SQuAD normalisation glues a call written without spaces into one "word": the right call scores 0 F1.
    assert token_f1("json.dumps(obj,indent=2,sort_keys=True)", reference) == 0.0
    assert code_exact_match("json.dumps(obj,indent=2,sort_keys=True)", reference) == 1.0


def test_every_metric_of_the_registry_scores_items_it_applies_to():
    from ragtune.evaluation.registry import METRICS, ScoringItem, deciding_metrics, get_metric, score_items

    class FixedEmbedder:
        def encode(self, texts):
            return np.array([[1.0, 0.0] if "paris" in text.lower() else [0.0, 1.0] for text in texts])

    closed = ScoringItem("Paris", "Paris")
    retrieved = ScoringItem("Paris is the capital", "Paris", passages=["Paris is the capital of France"],
                            gold_ranks=[False, True, False], k=2, choices=["Paris", "Rome"],
                            choice_logprobs=[-1.0, -3.0])
    first, second = score_items([closed, retrieved], FixedEmbedder())
    assert set(first) == set(second) == set(METRICS)
    assert first["exact_match"] == first["code_exact_match"] == first["similarity"] == 1.0
    assert first["recall_at_k"] is first["mrr"] is first["groundedness"] is first["mc_accuracy"] is None
    assert second["recall_at_k"] == 1.0 and second["mrr"] == 0.5 and second["groundedness"] == 1.0
    assert second["mc_accuracy"] == 1.0
    assert set(deciding_metrics()) >= {"f1", "exact_match", "rougeL", "chrf", "code_f1", "mc_accuracy"}
    assert "recall_at_k" not in deciding_metrics()  # closed-book strategies have no retrieval metrics
    with pytest.raises(Exception, match="unknown metric 'rogue'.*"):
        get_metric("rogue")
