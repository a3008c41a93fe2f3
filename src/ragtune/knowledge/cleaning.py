"""Cleaning stage of ingest: normalisation, garbled-text detection, exact and near-duplicate detection."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
from datasketch import MinHash, MinHashLSH

_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\ufeff\u00ad]")
_SPACES = re.compile(r"[^\S\n]+")
_TRAILING = re.compile(r" +\n| +$")
_BLANK_RUNS = re.compile(r"\n{3,}")
_LETTER = re.compile(r"[^\W\d_]")
_SPACE = re.compile(r"\s")
_MOJIBAKE = re.compile(r"[ÃÂ][^A-Z\s]")  # UTF-8 read as Latin-1/cp1252 ("Ã©" for "é"), not "SÃO"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")

# garbled_reason thresholds: real prose (scientific text with numbers and tables included) is far
# from all of them; binary junk, mojibake and glued-together PDF extraction are not.
_MAX_REPLACEMENT_SHARE = 0.03
_MIN_LETTER_SHARE = 0.25
_MIN_SPACE_SHARE = 0.03
_MAX_MOJIBAKE_SHARE = 0.02
_SAMPLE_CHARS = 100_000


def normalize_text(text: str) -> str:
    """NFKC; unify line breaks; drop control and invisible characters; tabs and runs of spaces become
    one space; strip line ends; at most one blank line in a row. Headings and paragraphs are kept."""
    text = unicodedata.normalize("NFKC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def garbled_reason(text: str, min_chars: int, *, min_letter_share: float = _MIN_LETTER_SHARE) -> str | None:
    """Why `text` is not worth indexing (too short, or garbled), or None when it looks like real text."""
    stripped = text.strip()
    if len(stripped) < min_chars:
        return f"empty or shorter than {min_chars} characters"
    sample = _sample(stripped)
    visible = max(len(sample) - len(_SPACE.findall(sample)), 1)
    letters = len(_LETTER.findall(sample))
    replacement_share = sample.count("\ufffd") / len(sample)
    if replacement_share > _MAX_REPLACEMENT_SHARE:
        return f"{replacement_share:.0%} of characters are U+FFFD replacements (wrong encoding or damaged file)"
    if letters < min_letter_share * visible:
        return f"only {letters / visible:.0%} of characters are letters (binary data or extraction junk?)"
    if len(_MOJIBAKE.findall(sample)) > _MAX_MOJIBAKE_SHARE * letters:
        return "looks like mojibake (UTF-8 text decoded as Latin-1, e.g. 'Ã©' for 'é')"
    space_share = 1 - visible / len(sample)
    if len(sample) >= 200 and space_share < _MIN_SPACE_SHARE and len(_CJK.findall(sample)) < 0.3 * visible:
        return "almost no spaces between words (garbled extraction?)"
    return None


def _sample(text: str) -> str:
    """Beginning, middle and end of a long text: enough to judge it, bounded cost."""
    if len(text) <= 3 * _SAMPLE_CHARS:
        return text
    middle = len(text) // 2
    return text[:_SAMPLE_CHARS] + text[middle:middle + _SAMPLE_CHARS] + text[-_SAMPLE_CHARS:]


def content_hash(text: str) -> str:
    """sha256 hex of the normalised text: equal for texts that differ only in layout or encoding form."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


class NearDuplicateIndex:
    """Near-duplicate detection with MinHash LSH over lowercased word 5-shingles (deterministic).

    Texts under 100 words use single words instead: there, one edited word changes up to 5 of some 20
    shingles, which would put every lightly edited short text far below a useful threshold.
    Signatures are bytes so that callers can store them (e.g. in SQLite) and rebuild the index later.
    """

    SHINGLE_WORDS = 5
    SHORT_TEXT_WORDS = 100
    _SEED = 1
    _BATCH = 20_000  # shingles hashed at once (memory grows with batch size × num_perm)

    def __init__(self, threshold: float = 0.9, num_perm: int = 128):
        self.threshold = threshold
        self.num_perm = num_perm
        # LSH only proposes candidates; a lower LSH threshold favours recall, `find` checks the estimate.
        self._lsh = MinHashLSH(threshold=min(max(threshold * 0.8, 0.1), 0.9), num_perm=num_perm)
        self._minhashes: dict[str, MinHash] = {}
        self._template = self._new_minhash()

    def signature(self, text: str) -> bytes:
        """The MinHash signature of a text (num_perm little-endian uint64 values)."""
        words = re.findall(r"\w+", text.lower())
        n = self.SHINGLE_WORDS if len(words) >= self.SHORT_TEXT_WORDS else 1
        shingles = {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
        minhash = self._new_minhash()
        encoded = [shingle.encode("utf-8") for shingle in shingles]
        for start in range(0, len(encoded), self._BATCH):
            minhash.update_batch(encoded[start:start + self._BATCH])
        return minhash.hashvalues.astype("<u8").tobytes()

    def add(self, doc_id: str, signature: bytes) -> None:
        """Index a document (replacing any earlier signature under the same id)."""
        self.remove(doc_id)
        minhash = self._from_signature(signature)
        self._lsh.insert(doc_id, minhash)
        self._minhashes[doc_id] = minhash

    def remove(self, doc_id: str) -> None:
        """Forget a document; unknown ids are ignored."""
        if self._minhashes.pop(doc_id, None) is not None:
            self._lsh.remove(doc_id)

    def find(self, signature: bytes) -> str | None:
        """The id of the most similar indexed document with estimated Jaccard >= threshold, else None."""
        minhash = self._from_signature(signature)
        best, best_score = None, self.threshold
        for candidate in sorted(self._lsh.query(minhash)):
            score = minhash.jaccard(self._minhashes[candidate])
            if score >= best_score and (best is None or score > best_score):
                best, best_score = candidate, score
        return best

    def __len__(self) -> int:
        return len(self._minhashes)

    def _new_minhash(self) -> MinHash:
        return MinHash(num_perm=self.num_perm, seed=self._SEED)

    def _from_signature(self, signature: bytes) -> MinHash:
        values = np.frombuffer(signature, dtype="<u8")
        if values.size != self.num_perm:
            raise ValueError(f"signature has {values.size} values, this index uses num_perm={self.num_perm}")
        # the seed's permutations drawn once: drawing them per MinHash was 90% of loading a stored corpus's signatures
        return MinHash(num_perm=self.num_perm, seed=self._SEED, hashvalues=values.astype(np.uint64),
                       permutations=self._template.permutations, scheme=self._template.scheme)
