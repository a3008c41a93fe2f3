"""Training-data sources: `FILE[:weight=W][:task=T]` specs and the rows of JSONL and text files.

Each JSONL row's format is detected from its fields: Q&A (`question`, `answer`, optional `context`,
`choices`, `id`), instruction (`instruction`, `input`, `output`), chat (`messages`) or raw text (`text`).
Bad rows are reported with `file:line` and a reason instead of stopping the run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragtune.data.examples import Example
from ragtune.errors import RagtuneError
from ragtune.knowledge.cleaning import normalize_text
from ragtune.knowledge.types import Hit
from ragtune.prompts import build_messages

Objective = Literal["sft", "cpt", "raft"]
KNOWLEDGE_BASE = "kb"
TEXT_SUFFIXES = (".txt", ".md")
ROLES = ("system", "user", "assistant")
FORMATS_HINT = ("each line must be a JSON object with question/answer, instruction/output, messages "
                "(chat) or text (cpt) fields")


@dataclass
class DatasetSpec:
    """A dataset to train on: a file, a directory of text files or `kb`, with its mixture weight and task tag."""

    path: str
    weight: float = 1.0
    task: str | None = None


def reads_knowledge_base(specs: list[DatasetSpec], objective: str | None) -> bool:
    """Whether training data from `specs` reads the project's knowledge base: RAFT's passages, the `kb` dataset."""
    return objective == "raft" or any(spec.path == KNOWLEDGE_BASE for spec in specs)


def parse_dataset_spec(text: str) -> DatasetSpec:
    """Parse `FILE`, `FILE:weight=2` or `FILE:weight=0.5:task=style` (options are trailing `:key=value` parts)."""
    parts = text.split(":")
    options = {}
    while len(parts) > 1 and "=" in parts[-1]:
        key, _, value = parts.pop().partition("=")
        options[key.strip()] = value.strip()
    spec = DatasetSpec(":".join(parts))
    for key, value in options.items():
        if key == "weight":
            spec.weight = _weight(text, value)
        elif key == "task":
            if not value:
                raise RagtuneError(f"dataset '{text}': empty task name", "e.g. train.jsonl:task=style")
            spec.task = value
        else:
            raise RagtuneError(f"dataset '{text}': unknown option '{key}'",
                               "the options are weight and task, e.g. train.jsonl:weight=0.5:task=style")
    if not spec.path:
        raise RagtuneError(f"dataset '{text}': no file given", "e.g. train.jsonl or train.jsonl:weight=2")
    return spec


def _weight(spec_text: str, value: str) -> float:
    try:
        weight = float(value)
    except ValueError:
        weight = 0.0
    if not (weight > 0 and math.isfinite(weight)):
        raise RagtuneError(f"dataset '{spec_text}': weight must be a positive number, got '{value}'",
                           "e.g. train.jsonl:weight=2 (every row twice) or :weight=0.5 (half of them)")
    return weight


def load_examples(spec: DatasetSpec, *, objective: Objective,
                  knowledge_base=None) -> tuple[list[Example], list[dict]]:
    """The examples of one dataset and the rows removed while reading it (`{"origin", "reason", "detail"}`).

    `kb` (CPT only) reads the documents of `knowledge_base`. Raises RagtuneError for a missing or unreadable
    file, and for a file none of whose rows can be used (naming the first bad line).
    """
    if spec.path == KNOWLEDGE_BASE:
        examples, removed = _knowledge_base_examples(knowledge_base, objective), []
    else:
        path = Path(spec.path)
        if not path.exists():
            raise RagtuneError(f"{spec.path}: no such file or directory",
                               "pass a .jsonl file, a .txt/.md file, a directory of them, or kb")
        if path.is_dir() or path.suffix.lower() in TEXT_SUFFIXES:
            examples, removed = _text_file_examples(spec.path, path, objective)
        elif path.suffix.lower() == ".jsonl":
            examples, removed = _jsonl_examples(spec.path, path, objective)
        else:
            raise RagtuneError(f"{spec.path}: unsupported file type '{path.suffix}'",
                               "use a .jsonl file, a .txt/.md file or a directory of them")
    for example in examples:
        example.task = spec.task or example.task
    return examples, removed


def _jsonl_examples(name: str, path: Path, objective: Objective) -> tuple[list[Example], list[dict]]:
    examples, removed = [], []
    for number, line in enumerate(_read_text(name, path).splitlines(), start=1):
        if not line.strip():
            continue
        origin = f"{name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            removed.append(_removal(origin, "invalid JSON", f"{exc.msg} (column {exc.colno})"))
            continue
        try:
            examples.append(_row_example(row, origin, f"{path.stem}-{number}", objective))
        except _RowError as error:
            removed.append(_removal(origin, error.reason, error.detail))
    if not examples:
        if not removed:
            raise RagtuneError(f"{name}: the file has no rows", FORMATS_HINT)
        first = removed[0]
        detail = f" ({first['detail']})" if first.get("detail") else ""
        raise RagtuneError(f"{name}: none of its {len(removed)} rows can be used; line "
                           f"{first['origin'].rsplit(':', 1)[1]}: {first['reason']}{detail}", FORMATS_HINT)
    return examples, removed


class _RowError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _row_example(row, origin: str, default_id: str, objective: Objective) -> Example:
    """The example of one parsed JSONL row, or _RowError saying why the row cannot be used."""
    if not isinstance(row, dict):
        raise _RowError("not a JSON object", f"got {type(row).__name__}")
    example_id = str(row["id"]) if row.get("id") is not None else default_id
    if objective == "cpt":
        if "text" not in row:
            raise _RowError("no text field", "cpt trains on raw text: one {\"text\": ...} object per line")
        return Example(example_id, text=_text_field(row, "text"), origin=origin)
    if "messages" in row:
        _require_not_raft(objective, "a chat row")
        return Example(example_id, messages=_chat_messages(row["messages"]), origin=origin)
    if "question" in row or "answer" in row:
        return _qa_example(row, origin, example_id)
    if "instruction" in row or "output" in row:
        _require_not_raft(objective, "an instruction row")
        instruction, output = _text_field(row, "instruction"), _text_field(row, "output")
        extra = _text_field(row, "input", required=False)
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        return Example(example_id, messages=[{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": output}], origin=origin)
    if "text" in row:
        raise _RowError("raw text row", "a {\"text\": ...} row is raw text for --objective cpt")
    raise _RowError("unknown row format", f"{FORMATS_HINT}; found fields: {', '.join(sorted(row)) or 'none'}")


def _require_not_raft(objective: Objective, what: str) -> None:
    if objective == "raft":
        raise _RowError("not a question/answer row", f"raft builds passages for question/answer rows, not {what}")


def _qa_example(row: dict, origin: str, example_id: str) -> Example:
    question, answer = _text_field(row, "question"), _text_field(row, "answer")
    context = _text_field(row, "context", required=False)
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise _RowError("invalid field", "`choices` must be a list of strings")
        choices = [normalize_text(c) for c in choices]
    passages = [Hit(chunk_id=0, source=origin, text=context, score=1.0)] if context else []
    messages = build_messages(question, passages) + [{"role": "assistant", "content": answer}]
    chunk_id = row.get("chunk_id")
    if chunk_id is not None and (isinstance(chunk_id, bool) or not isinstance(chunk_id, int)):
        raise _RowError("invalid field", "`chunk_id` must be an integer (a chunk id of the knowledge base)")
    source = row.get("source") or ""
    if not isinstance(source, str):
        raise _RowError("invalid field", "`source` must be a string (the document the answer comes from)")
    return Example(example_id, messages=messages, origin=origin, question=question, answer=answer,
                   choices=choices, context=context, source=source, chunk_id=chunk_id)


def _text_field(row: dict, name: str, required: bool = True) -> str:
    """A normalised string field; a missing or empty required field is a _RowError naming it."""
    value = row.get(name)
    if value is None:
        if required:
            raise _RowError(f"missing field `{name}`")
        return ""
    if not isinstance(value, str):
        raise _RowError("invalid field", f"`{name}` must be a string, got {type(value).__name__}")
    text = normalize_text(value)
    if required and not text:
        raise _RowError(f"empty `{name}`")
    return text


def _chat_messages(messages) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise _RowError("invalid field", "`messages` must be a non-empty list of {role, content} objects")
    result = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _RowError("invalid message", f"message {number} needs a role of system, user or assistant")
        try:
            content = _text_field(message, "content")
        except _RowError as error:
            raise _RowError("invalid message", f"message {number}: {error.reason} {error.detail}".strip()) from None
        result.append({"role": message["role"], "content": content})
    if result[-1]["role"] != "assistant":
        raise _RowError("no answer", "the last message must be the assistant's")
    return result


def _text_file_examples(name: str, path: Path, objective: Objective) -> tuple[list[Example], list[dict]]:
    if objective != "cpt":
        raise RagtuneError(f"{name}: text files are raw text, which only --objective cpt trains on",
                           "for sft and raft, pass JSONL rows with question/answer, instruction/output or messages")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES) \
        if path.is_dir() else [path]
    if not files:
        raise RagtuneError(f"{name}: no .txt or .md files in this directory", "pass a directory of text files")
    examples, removed = [], []
    for file in files:
        origin = str(Path(name) / file.relative_to(path)) if path.is_dir() else name
        text = normalize_text(_read_text(origin, file))
        if text:
            examples.append(Example(origin, text=text, origin=origin))
        else:
            removed.append(_removal(origin, "empty text"))
    if not examples:
        raise RagtuneError(f"{name}: every text file is empty", "pass files with text in them")
    return examples, removed


def _knowledge_base_examples(knowledge_base, objective: Objective) -> list[Example]:
    if objective != "cpt":
        raise RagtuneError("the dataset `kb` (the knowledge base's documents) is raw text for --objective cpt",
                           "for sft and raft, pass JSONL files of questions and answers")
    if knowledge_base is None or not knowledge_base.store.counts()["documents"]:
        raise RagtuneError("the knowledge base has no documents to train on", "run `ragtune ingest` first")
    examples = []
    for source, part, text in knowledge_base.store.document_texts():
        origin = f"kb:{source}#{part}" if part else f"kb:{source}"
        examples.append(Example(origin, text=text, origin=origin))
    return examples


def _read_text(name: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RagtuneError(f"{name}: not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from exc
    except OSError as exc:
        raise RagtuneError(f"{name}: cannot read the file ({exc.strerror})", "check the path and permissions") from exc


def _removal(origin: str, reason: str, detail: str = "") -> dict:
    return {"origin": origin, "reason": reason, **({"detail": detail} if detail else {})}
