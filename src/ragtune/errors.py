"""Errors that reach the user: each says what went wrong, where, and what to do."""

from __future__ import annotations


class RagtuneError(Exception):
    """A user-facing error with an actionable hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class SourceError(RagtuneError):
    """A source (file, URL, database query) that cannot be read; the rest of the batch goes on."""

    def __init__(self, source: str, message: str, hint: str | None = None):
        super().__init__(f"{source}: {message}", hint)
        self.source = source
        self.reason = message

    def __reduce__(self):  # rebuilt from its own arguments (raised in a child process, re-raised in the parent)
        return type(self), (self.source, self.reason, self.hint)


class ModelNotAvailableError(RagtuneError):
    """A named model whose files are not installed; never triggers a hub download."""
