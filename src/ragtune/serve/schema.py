"""The request bodies the API accepts: OpenAI's schema for chat and embeddings (with ragtune's optional `k` and
`source_glob`), and ragtune's own for search and feedback. Fields of OpenAI's schema that ragtune does not
implement are refused with a message naming them, never silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints,
                      field_validator)

from ragtune.arena.store import RATER_PATTERN
from ragtune.knowledge.types import METADATA_KEY

MAX_MESSAGES = 200
MAX_MESSAGE_CHARS = 32_000
MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 256
MAX_METADATA_FILTERS = 20

MetadataText = Annotated[str, StringConstraints(max_length=500)]
MetadataFilter = Annotated[dict[Annotated[str, StringConstraints(pattern=METADATA_KEY.pattern)],
                                StrictBool | StrictInt | StrictFloat | MetadataText],
                           Field(max_length=MAX_METADATA_FILTERS)] | None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `name` and the like carry nothing ragtune uses

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)

    @field_validator("role", mode="before")
    @classmethod
    def _developer_is_system(cls, value: Any) -> Any:
        return "system" if value == "developer" else value  # OpenAI's newer name for the system role

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, value: Any) -> Any:
        """OpenAI's content may be a list of parts; text parts are joined, any other part is refused."""
        if value is None:
            return ""
        if isinstance(value, list):
            if any(not isinstance(part, dict) or part.get("type") != "text" for part in value):
                raise ValueError("only text content is supported (no images, audio or files)")
            return "".join(str(part.get("text", "")) for part in value)
        return value


# OpenAI fields ragtune refuses unless they hold the value that means "not used".
_UNSUPPORTED_UNLESS = {"n": (None, 1), "logprobs": (None, False), "top_logprobs": (None, 0), "tools": (None, []),
                       "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
                       "logit_bias": (None, {}), "response_format": (None, {"type": "text"}),
                       "audio": (None,), "modalities": (None, ["text"]), "prediction": (None,)}
_ACCEPTED_EXTRA = {"user", "stream_options", "store", "metadata", "parallel_tool_calls", "service_tier"}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, ge=1, le=2, description="ragtune (as vLLM): 1 is off; the "
                                             "server's chat default otherwise")
    k: int | None = Field(None, ge=0, le=50, description="ragtune: passages to retrieve (strategies that retrieve)")
    source_glob: str | None = Field(None, max_length=500, description="ragtune: only sources matching this glob")
    metadata_filter: MetadataFilter = Field(None, description="ragtune: only documents whose metadata holds these "
                                            "values, e.g. {\"department\": \"HR\"}")

    def unsupported(self) -> list[str]:
        """The fields of this request ragtune cannot honour, with their values."""
        extra = self.model_extra or {}
        refused = [f"{name}={extra[name]!r}" for name, allowed in _UNSUPPORTED_UNLESS.items()
                   if name in extra and extra[name] not in allowed]
        unknown = sorted(set(extra) - set(_UNSUPPORTED_UNLESS) - _ACCEPTED_EXTRA)
        return refused + [f"{name} (unknown field)" for name in unknown]

    def stop_sequences(self) -> list[str] | None:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if stops is not None and len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if stops is not None and not all(stops):
            raise ValueError("a stop sequence cannot be empty")
        return stops


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] = Field(description="one text or a list of texts")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"  # base64: little-endian float32, as OpenAI's

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"between 1 and {MAX_EMBEDDING_INPUTS} texts")
        if any(len(text) > MAX_MESSAGE_CHARS for text in texts):
            raise ValueError(f"each text at most {MAX_MESSAGE_CHARS} characters")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    k: int = Field(5, ge=1, le=100)
    mode: Literal["dense", "lexical", "hybrid"] | None = None
    source_glob: str | None = Field(None, max_length=500)
    metadata_filter: MetadataFilter = None


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markdown: str = Field(max_length=200_000)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=100)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)


class BattleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rater: str = Field(pattern=RATER_PATTERN)
    question: str | None = Field(None, min_length=1, max_length=MAX_MESSAGE_CHARS,
                                 description="A question to answer live; none: the next of the comparison's.")


class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["a", "b", "tie", "both_bad"]
    reason: str | None = Field(None, max_length=4000)
    rating_a: int | None = Field(None, ge=1, le=5)
    rating_b: int | None = Field(None, ge=1, le=5)
    seconds_to_vote: float | None = Field(None, ge=0, le=86_400)
