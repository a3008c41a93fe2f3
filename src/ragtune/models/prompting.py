"""The prompt template for models without a chat template (base models), shared by all local engines."""

from __future__ import annotations

from ragtune.models.base import Message

PLAIN_STOPS = ["\nUser:", "\nAssistant:"]  # a base model starting another turn has finished its answer


def plain_prompt(messages: list[Message]) -> str:
    """Render a conversation as `system\\n\\nUser: ...\\nAssistant:` text."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(f"{message['content']}\n\n")
        else:
            parts.append(f"{message['role'].capitalize()}: {message['content']}\n")
    return "".join(parts) + "Assistant:"
