"""Every answer the server gives, recorded with its feedback in the project's records database (the knowledge base's
PostgreSQL database when it has one): what human evaluation and monitoring read later (which model, the
conversation, the chunks retrieved and cited, latency, tokens)."""

from __future__ import annotations

import json
import time

from ragtune.locked_database import LockedDatabase
from ragtune.rag import Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    model TEXT NOT NULL,
    strategy TEXT NOT NULL,
    messages TEXT NOT NULL,          -- the conversation as received (JSON)
    answer TEXT NOT NULL,
    retrieved TEXT NOT NULL,         -- [{"chunk_id", "source", "score"}] in rank order (JSON)
    citations TEXT NOT NULL,         -- [{"number", "source", "chunk_id"}] (JSON)
    latency_s DOUBLE PRECISION NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    feedback TEXT,                   -- 'up' or 'down'
    feedback_comment TEXT,
    feedback_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS answers_created ON answers(created_at);
"""


def question_of(messages: list[dict]) -> str:
    """A conversation's last user message (what retrieval searched for by default)."""
    return next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")


class UnknownResponse(LookupError):
    """Feedback for a response id the log does not hold."""


class AnswerLog(LockedDatabase):
    """The `answers` table of the project's records database (see LockedDatabase), safe to use from the server's
    threads."""

    RECORDS = "answers"
    SCHEMA = _SCHEMA

    def record(self, response_id: str, model: str, strategy: str, messages: list[dict], answer: Answer) -> None:
        """Store one answer."""
        retrieved = [{"chunk_id": hit.chunk_id, "source": hit.source, "score": round(float(hit.score), 6)}
                     for hit in answer.passages]
        citations = [{key: citation[key] for key in ("number", "source", "chunk_id")} for citation in answer.citations]
        with self._lock:
            self._db.execute(
                "INSERT INTO answers (id, created_at, model, strategy, messages, answer, retrieved, citations, "
                "latency_s, prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (response_id, time.time(), model, strategy, json.dumps(messages), answer.answer, json.dumps(retrieved),
                 json.dumps(citations), answer.timings["total_s"], answer.timings["prompt_tokens"],
                 answer.timings["completion_tokens"]))

    def add_feedback(self, response_id: str, rating: str, comment: str | None) -> None:
        """Attach a rating (the latest wins) to a recorded answer, or raise UnknownResponse."""
        with self._lock:
            updated = self._db.execute("UPDATE answers SET feedback = ?, feedback_comment = ?, feedback_at = ? "
                                       "WHERE id = ?", (rating, comment, time.time(), response_id)).rowcount
        if not updated:
            raise UnknownResponse(response_id)

    def get(self, response_id: str) -> dict | None:
        """One recorded answer as a dict (JSON columns decoded), or None."""
        with self._lock:
            cursor = self._db.execute("SELECT * FROM answers WHERE id = ?", (response_id,))
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        if row is None:
            return None
        record = dict(zip(names, row))
        for key in ("messages", "retrieved", "citations"):
            record[key] = json.loads(record[key])
        return record

    def history(self, questions_of_latest: int) -> list[dict]:
        """Every recorded answer, oldest first, as monitoring reads it: created_at, model, latency_s, retrieved
        (chunk ids), cited (how many citations), feedback, feedback_comment, and question (the last user message)
        for the `questions_of_latest` most recent answers and every thumbs-down, None for the others: conversations
        are the bulk of the log and are only decoded where they are shown or embedded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT created_at, model, latency_s, retrieved, citations, feedback, feedback_comment, "
                "CASE WHEN feedback = 'down' OR ROW_NUMBER() OVER (ORDER BY created_at DESC, id DESC) <= ? "
                "THEN messages END FROM answers ORDER BY created_at, id", (questions_of_latest,)).fetchall()
        return [{"created_at": at, "model": model, "latency_s": latency,
                 "retrieved": [hit["chunk_id"] for hit in json.loads(retrieved)], "cited": len(json.loads(citations)),
                 "feedback": feedback, "feedback_comment": comment,
                 "question": question_of(json.loads(messages)) if messages is not None else None}
                for at, model, latency, retrieved, citations, feedback, comment, messages in rows]
