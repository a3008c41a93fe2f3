"""One training example, in the form every objective shares (chat messages for SFT/RAFT, raw text for CPT)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Example:
    """A training row.

    `messages` are chat messages whose last one is the assistant target (SFT, RAFT); `text` is raw text
    (CPT). `origin` says where the row came from ("train.jsonl:12", "kb:docs/a.md"); `question`, `answer`,
    `context` and `choices` keep the fields of Q&A rows for RAFT and evaluation.
    """

    id: str
    messages: list[dict[str, str]] = field(default_factory=list)
    text: str = ""
    task: str = "default"
    origin: str = ""
    question: str = ""
    answer: str = ""
    choices: list[str] | None = None
    context: str = ""
    source: str = ""  # the document the answer comes from (e.g. a synthesized row's), when the row names it
    chunk_id: int | None = None  # the knowledge-base chunk the answer comes from, when the row names it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Example":
        """The example of a `to_dict()` record (unknown keys are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def comparison_text(self) -> str:
        """The text that duplicate and leakage checks compare: question and answer, the conversation, or
        the raw text. Passages (context, system prompt) are left out: many questions share one passage."""
        if self.text:
            return self.text
        if self.question:
            return f"{self.question}\n{self.answer}"
        return "\n".join(m["content"] for m in self.messages if m["role"] != "system")
