"""Answer, retrieval and multiple-choice metrics. Prose comparisons use SQuAD normalisation (lower case, no
punctuation, no articles, single spaces); code comparisons use code tokens, which keep what SQuAD drops."""

from __future__ import annotations

import re
import string
from collections import Counter

import sacrebleu
from rouge_score import rouge_scorer

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation, so scores are comparable with published ones."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall between the normalised texts (SQuAD F1)."""
    return _multiset_f1(normalize_answer(prediction).split(), normalize_answer(reference).split())


def _multiset_f1(predicted: list[str], expected: list[str]) -> float:
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------ overlap with the reference

_ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Porter-stemmed tokens), keyed rouge1, rouge2, rougeL."""
    scores = _ROUGE.score(reference, prediction)  # rouge-score takes the reference first
    return {name: float(score.fmeasure) for name, score in scores.items()}


def sentence_bleu(prediction: str, reference: str) -> float:
    """sacrebleu's sentence BLEU (13a tokens, exponential smoothing, effective n-gram order) in 0..1."""
    return min(sacrebleu.sentence_bleu(prediction, [reference]).score / 100, 1.0)


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """sacrebleu's corpus BLEU (n-gram counts pooled over all pairs) in 0..1."""
    _check_same_length(predictions, references)
    if not predictions:
        return 0.0
    return min(sacrebleu.corpus_bleu(predictions, [references]).score / 100, 1.0)


def chrf(prediction: str, reference: str) -> float:
    """sacrebleu's sentence chrF (character 6-grams, beta 2) in 0..1: partial credit for identifiers and arguments."""
    return min(sacrebleu.sentence_chrf(prediction, [reference]).score / 100, 1.0)


# ------------------------------------------------------------------------------------------------------ code

_CODE_FENCE = re.compile(r"^```[\w+-]*\s*|\s*```$")
_CODE_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S")


def code_tokens(text: str) -> list[str]:
    """Identifiers, numbers, string literals (in single quotes whatever their quoting) and single symbols of a
    code answer; a surrounding code fence or backticks and all whitespace are dropped."""
    text = _CODE_FENCE.sub("", text.strip()).strip()
    if len(text) > 1 and text[0] == text[-1] == "`":
        text = text.strip("`")
    tokens = []
    for token in _CODE_TOKEN.findall(text):
        if len(token) > 1 and token[0] == token[-1] == '"':
            token = "'" + token[1:-1].replace("'", "\\'") + "'"
        tokens.append(token)
    return tokens


def code_exact_match(prediction: str, reference: str) -> float:
    """1.0 when both have the same code tokens in the same order (whitespace, quote style and fences ignored)."""
    return float(code_tokens(prediction) == code_tokens(reference))


def code_token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of precision and recall over the multisets of code tokens."""
    return _multiset_f1(code_tokens(prediction), code_tokens(reference))


def embedding_similarity(predictions: list[str], references: list[str], embedder) -> list[float]:
    """Cosine similarity of each prediction's embedding with its reference's (0.0 for an empty prediction).

    `embedder` is a knowledge.embedder.Embedder (normalised vectors); all texts are embedded in its batches.
    """
    _check_same_length(predictions, references)
    answered = [i for i, prediction in enumerate(predictions) if prediction.strip()]
    similarities = [0.0] * len(predictions)
    if answered:
        vectors = embedder.encode([predictions[i] for i in answered] + [references[i] for i in answered])
        cosines = (vectors[: len(answered)] * vectors[len(answered):]).sum(axis=1)
        for i, cosine in zip(answered, cosines):
            similarities[i] = float(cosine)
    return similarities


def _check_same_length(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


# ---------------------------------------------------------------------------- support by retrieved passages

# Function words that carry no claim. Negations ("no", "not") are left out on purpose: they change
# what an answer asserts, so they must be supported like any other word.
STOPWORDS = frozenset(
    "about also and any are as at be been being but by can could did do does for from had has have he her "
    "his how i if in into is it its me my of on or our she so than that their them then there these they "
    "this those to us was we were what when where which who whom why will with would you your".split()
)


def content_tokens(text: str) -> list[str]:
    """The normalised tokens of `text` that are not STOPWORDS."""
    return [token for token in normalize_answer(text).split() if token not in STOPWORDS]


def groundedness(answer: str, passages: list[str]) -> float | None:
    """Share of the answer's content-token occurrences that also occur anywhere in the passages.

    A lexical support score: 1.0 means every content word of the answer (SQuAD-normalised,
    STOPWORDS removed) appears in some passage, not that the passages entail the answer: a
    recombination of passage words into a false statement still scores 1.0, and a correct
    paraphrase scores low. None when the answer has no content tokens or there are no passages.
    """
    claimed = content_tokens(answer)
    if not claimed or not passages:
        return None
    available = {token for passage in passages for token in normalize_answer(passage).split()}
    return sum(token in available for token in claimed) / len(claimed)


def passage_contains_answer(passage_text: str, answer: str) -> bool:
    """Whether the normalised answer occurs in the normalised passage as whole tokens ("cat" not in "category").

    The gold-passage test when no gold document id is known; an answer that normalises to nothing is never found.
    """
    needle = normalize_answer(answer)
    return bool(needle) and f" {needle} " in f" {normalize_answer(passage_text)} "


# ----------------------------------------------------------------------------------------------- retrieval

def recall_at_k(ranked_keys: list[str], gold: set[str], k: int) -> float:
    """1.0 when any gold key is among the first k ranked keys, else 0.0."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return float(any(key in gold for key in ranked_keys[:k]))


def reciprocal_rank(ranked_keys: list[str], gold: set[str], k: int = 10) -> float:
    """1 / rank of the first gold key among the first k ranked keys (rank 1 is the top), 0.0 when none is."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return next((1 / rank for rank, key in enumerate(ranked_keys[:k], start=1) if key in gold), 0.0)


# ----------------------------------------------------------------------------------------- multiple choice

def multiple_choice_correct(choice_logprobs: list[float], choices: list[str], answer: str) -> bool:
    """Whether the choice with the highest summed log-likelihood is the answer (lm-evaluation-harness `acc`).

    `answer` names a choice by its text (normalize_answer equality, plain lower-case equality for
    texts that normalise to nothing such as "A") or, when no choice text matches, by its letter
    label: "B", "b", "(B)" or "B." for the second choice. Numbers are never read as positions,
    since numeric answers are usually the choice text itself. Ties at the maximum go to the first
    choice. ValueError when the answer names no choice.
    """
    if len(choice_logprobs) != len(choices) or not choices:
        raise ValueError(f"{len(choice_logprobs)} log-likelihoods for {len(choices)} choices")
    correct = _answer_indices(choices, answer)
    return max(range(len(choices)), key=lambda i: choice_logprobs[i]) in correct


def _choice_key(text: str) -> str:
    """normalize_answer, or the lower-cased text when that normalises to nothing (a choice "A", "The")."""
    return normalize_answer(text) or text.strip().lower()


def _answer_indices(choices: list[str], answer: str) -> set[int]:
    target = _choice_key(answer)
    matches = {i for i, choice in enumerate(choices) if target and _choice_key(choice) == target}
    if matches:
        return matches
    label = answer.strip().strip("().").upper()
    if len(label) == 1 and "A" <= label <= "Z" and ord(label) - ord("A") < len(choices):
        return {ord(label) - ord("A")}
    raise ValueError(f"the answer {answer!r} matches none of the choices {choices} (by text or letter)")
