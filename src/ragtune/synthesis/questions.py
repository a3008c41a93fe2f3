"""The generator's part: write the question whose answer is the chosen span (one-shot prompts per kind)."""

from __future__ import annotations

import re
from typing import Iterator

from ragtune.models.base import GenerationConfig, GenerationEngine, Message
from ragtune.synthesis.sampling import PlannedItem

SYSTEM = "You write quiz questions. Reply with the question only."
EXAMPLES = {
    "factual": ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.", "in 1889",
                "When was the Eiffel Tower completed?"),
    "why": ("Bridges expand in summer because steel grows longer when it is heated.",
            "Bridges expand in summer because steel grows longer when it is heated.",
            "Why do bridges expand in summer?"),
    "two_sentences": ("Honey bees live in colonies of up to 60,000 workers. A single queen lays all of the eggs.",
                      "Honey bees live in colonies of up to 60,000 workers. A single queen lays all of the eggs.",
                      "How is a honey bee colony made up?"),
}
QUESTION_TOKENS = 48
_LABEL = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]\s*)", re.I)


def question_prompt(item: PlannedItem) -> list[Message]:
    """The conversation asking for `item`'s question: one worked example of its kind, then its own evidence."""
    passage, answer, question = EXAMPLES[item.kind]
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": _ask(passage, answer)},
            {"role": "assistant", "content": question},
            {"role": "user", "content": _ask(item.evidence, item.answer)}]


def _ask(passage: str, answer: str) -> str:
    return f"Passage: {passage}\nAnswer: {answer}\nWrite the question this answer answers."


def parse_question(text: str) -> str | None:
    """The question in a reply: its first non-empty line without a "Question:" label or quotes; None if empty."""
    for line in text.strip().splitlines():
        line = _LABEL.sub("", line).strip().strip("\"'“”").strip()
        if line:
            return line
    return None


def write_questions(engine: GenerationEngine, items: list[PlannedItem], *, batch_size: int = 8
                    ) -> Iterator[tuple[PlannedItem, str]]:
    """(item, the generator's raw reply) for every item, generated `batch_size` at a time (greedy)."""
    config = GenerationConfig(max_new_tokens=QUESTION_TOKENS)
    for first in range(0, len(items), batch_size):
        batch = items[first:first + batch_size]
        replies = engine.generate_batch([question_prompt(item) for item in batch], config)
        yield from zip(batch, (reply.text for reply in replies))
