"""Helpers shared by the format loaders: decoding bytes to text, titles, warning lists."""

from __future__ import annotations

import codecs
import re

from ragtune.errors import SourceError

_TITLE_CHARS = 200
_MAX_WARNINGS = 20
_HEADING = re.compile(r"^#{1,6}[ \t]+(\S.*)$", re.MULTILINE)
# Bytes that never occur in text files (all C0 controls except \t \n \v \f \r and ESC).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1b")


def decode_text(data: bytes, source: str) -> tuple[str, list[str]]:
    """Decode a text file's bytes; return the text and warnings (e.g. the encoding that was assumed).

    Raises SourceError for binary content or a file with no text.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, warnings = data.decode("utf-16"), []
    else:
        _reject_binary(data, source)
        text, warnings = _decode_8bit(data)
    if not text.strip():
        raise SourceError(source, "empty (no text in the file)", "remove the file or add content to it")
    return text, warnings


def _reject_binary(data: bytes, source: str) -> None:
    sample = data[:8192]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if b"\x00" in data or controls > 0.1 * len(sample):
        raise SourceError(source, "looks like a binary file, not text",
                          "check the file's extension, or convert it to a text format")


def _decode_8bit(data: bytes) -> tuple[str, list[str]]:
    try:
        return data.decode("utf-8-sig"), []  # plain UTF-8, with or without a byte-order mark
    except UnicodeDecodeError:
        pass
    text, encoding = _decode_legacy(data)
    return text, [f"not valid UTF-8; decoded as {encoding} (save the file as UTF-8 if the text looks wrong)"]


def _decode_legacy(data: bytes) -> tuple[str, str]:
    """Western text is most often cp1252; otherwise ask charset_normalizer (when installed), else latin-1."""
    try:
        cp1252 = data.decode("cp1252")
    except UnicodeDecodeError:
        cp1252 = None
    if cp1252 is not None and _mostly_ascii_letters(cp1252):
        return cp1252, "cp1252"
    try:
        import charset_normalizer
    except ImportError:
        charset_normalizer = None
    guess = charset_normalizer.from_bytes(data).best() if charset_normalizer else None
    if guess is not None:
        return str(guess), guess.encoding
    return (cp1252, "cp1252") if cp1252 is not None else (data.decode("latin-1"), "latin-1")


def _mostly_ascii_letters(text: str) -> bool:
    sample = text[:100_000]
    letters = sum(ch.isalpha() for ch in sample)
    ascii_letters = sum(ch.isascii() and ch.isalpha() for ch in sample)
    return letters == 0 or ascii_letters >= 0.7 * letters


def guess_title(text: str) -> str | None:
    """The first markdown heading, else the first non-empty line, trimmed to 200 characters."""
    match = _HEADING.search(text)
    if match:
        return match.group(1).strip()[:_TITLE_CHARS]
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:_TITLE_CHARS]
    return None


def cap_warnings(warnings: list[str]) -> list[str]:
    """Keep the first 20 warnings and say how many more there were."""
    if len(warnings) <= _MAX_WARNINGS:
        return warnings
    return warnings[:_MAX_WARNINGS] + [f"... and {len(warnings) - _MAX_WARNINGS} more warnings"]
