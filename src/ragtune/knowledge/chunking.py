"""Token-aware chunking that respects heading, paragraph and sentence boundaries, with overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from tokenizers import Tokenizer

from ragtune.knowledge.types import Chunk

_HEADING = re.compile(r"^#{1,6}\s+\S")
_ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "Fig.", "Figs.", "Dr.", "vs.", "No.", "approx.", "Ref.", "ca.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass
class _Sentence:
    start: int
    end: int
    tokens: int
    heading: str | None
    opens_section: bool


def split_sentences(text: str, offset: int = 0) -> Iterator[tuple[int, int]]:
    """Yield (start, end) character spans of the sentences in `text`, shifted by `offset`."""
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start:match.start()].rstrip()
        if candidate.endswith(_ABBREVIATIONS) or re.search(r"\b[A-Z]\.$", candidate):
            continue
        if candidate:
            yield offset + start, offset + start + len(candidate)
        start = match.end()
    tail = text[start:].rstrip()
    if tail:
        yield offset + start, offset + start + len(tail)


def _blocks(text: str) -> Iterator[tuple[int, int, bool]]:
    """Yield (start, end, is_heading) for each heading line and each paragraph."""
    position = 0
    for paragraph in re.split(r"(\n\s*\n)", text):
        if paragraph.strip() and not re.fullmatch(r"\n\s*\n", paragraph):
            line_start = position
            buffer_start = None
            for line in paragraph.split("\n"):
                line_end = line_start + len(line)
                if _HEADING.match(line.strip()):
                    if buffer_start is not None:
                        yield buffer_start, line_start - 1, False
                        buffer_start = None
                    yield line_start, line_end, True
                elif line.strip() and buffer_start is None:
                    buffer_start = line_start
                line_start = line_end + 1
            if buffer_start is not None:
                yield buffer_start, position + len(paragraph), False
        position += len(paragraph)


class Chunker:
    """Packs sentences into chunks of at most `chunk_tokens` tokens with `overlap_tokens` of overlap.

    A heading always starts a new chunk and is remembered as the chunk's `heading`; a sentence longer than
    a chunk is split on token boundaries.
    """

    def __init__(self, tokenizer: Tokenizer, chunk_tokens: int = 200, overlap_tokens: int = 40):
        if overlap_tokens >= chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token count of each text, without special tokens."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _split_long(self, text: str) -> list[tuple[int, int]]:
        """Character spans of consecutive windows of at most `chunk_tokens` tokens, cut between words."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        spans, start = [], 0
        while start < len(offsets):
            end = min(start + self.chunk_tokens, len(offsets))
            if end < len(offsets):
                cut = end
                while cut > start + 1 and offsets[cut][0] <= offsets[cut - 1][1]:  # no space: same word
                    cut -= 1
                end = cut if cut > start + 1 else end
            spans.append((offsets[start][0], offsets[end - 1][1]))
            start = end
        return spans

    def _sentences(self, text: str) -> list[_Sentence]:
        spans: list[tuple[int, int, str | None, bool]] = []
        heading: str | None = None
        for start, end, is_heading in _blocks(text):
            if is_heading:
                heading = text[start:end].strip().lstrip("#").strip()
                spans.append((start, end, heading, True))
                continue
            spans.extend((s_start, s_end, heading, False) for s_start, s_end in split_sentences(text[start:end], start))
        counts = self.count_tokens([text[s:e] for s, e, _, _ in spans]) if spans else []
        sentences = []
        for (start, end, heading, opens_section), tokens in zip(spans, counts):
            if tokens <= self.chunk_tokens:
                sentences.append(_Sentence(start, end, tokens, heading, opens_section))
                continue
            for piece_start, piece_end in self._split_long(text[start:end]):
                piece_tokens = self.count_tokens([text[start + piece_start:start + piece_end]])[0]
                sentences.append(_Sentence(start + piece_start, start + piece_end, piece_tokens, heading,
                                           opens_section))
                opens_section = False
        return sentences

    def chunk(self, text: str) -> list[Chunk]:
        """Split a normalised document into chunks."""
        chunks: list[Chunk] = []
        current: list[_Sentence] = []

        def flush() -> list[_Sentence]:
            if not current:
                return []
            start, end = current[0].start, current[-1].end
            chunks.append(Chunk(text=text[start:end], ordinal=len(chunks), start_char=start, end_char=end,
                                token_count=sum(s.tokens for s in current), heading=current[-1].heading))
            carried: list[_Sentence] = []
            for sentence in reversed(current):
                if sum(s.tokens for s in carried) + sentence.tokens > self.overlap_tokens:
                    break
                carried.insert(0, sentence)
            return carried if len(carried) < len(current) else []

        for sentence in self._sentences(text):
            used = sum(s.tokens for s in current)
            if sentence.opens_section and current:
                flush()
                current = [sentence]
            elif used + sentence.tokens > self.chunk_tokens:
                current = flush() + [sentence]
                while sum(s.tokens for s in current) > self.chunk_tokens:
                    current.pop(0)
            else:
                current.append(sentence)
        flush()
        return chunks

