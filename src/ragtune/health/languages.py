"""Which language a chunk is written in: py3langid (a numpy port of langid.py, 97 languages, its model shipped in
the package), counted only where it is confident, since short technical passages (author lists, tables) fool any
detector: on the bundled COVID-QA chunks every confident guess is English."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable

MIN_CONFIDENCE = 0.9
MIN_CHARS = 80


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_of(text: str) -> str | None:
    """The ISO 639-1 code of the text's language, or None when the text is too short or the guess unsure."""
    if len(text) < MIN_CHARS:
        return None
    language, confidence = _identifier().classify(text)
    return language if confidence >= MIN_CONFIDENCE else None


def language_counts(texts: Iterable[str]) -> dict[str, int]:
    """How many of the texts are confidently in each language ("unknown" for the rest), most common first."""
    return dict(Counter(language_of(text) or "unknown" for text in texts).most_common())
