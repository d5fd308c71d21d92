"""Saved conversations and answer feedback: one SQLite file in the data folder, shared by `rag ui`, `rag serve` and
`rag chat`, so a conversation survives a reload, a restart and a change of front end.

The file is the app's database (service/appdb.py: its schema and migrations). A file that is not a database, or one
held by a writer for too long, is one RagError line: the chat goes on without saving (see ui/conversations.py).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.answer import Answer
from rag.errors import RagError
from service.appdb import AppDatabase, AppDatabaseError

TITLE_CHARS = 80


class ConversationStoreError(AppDatabaseError):
    """The conversation database cannot be used (not a database, locked, unwritable)."""


class ConversationNotFound(RagError):
    """No conversation of this user has that id."""


@dataclass(frozen=True)
class ConversationInfo:
    id: str
    title: str
    collection: str
    owner: str
    created_at: str
    updated_at: str
    messages: int


@dataclass(frozen=True)
class SavedMessage:
    id: int
    role: str
    content: str
    answer: dict[str, Any] | None
    sources_html: str
    rating: int | None = None  # the owner's thumb on this answer: 1, -1, or none


@dataclass(frozen=True)
class Rated:
    """One rated answer with what produced it: the question, the query searched, the passages and the answer."""

    message_id: int
    rating: int
    note: str
    question: str
    answer: dict[str, Any]
    collection: str
    conversation_id: str
    rated_at: str


class ConversationStore:
    def __init__(self, database: AppDatabase | Path) -> None:
        self.database = database if isinstance(database, AppDatabase) else AppDatabase(database)
        self.path = self.database.path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed on success); SQLite's failures as one ConversationStoreError."""
        with self.database.transaction(ConversationStoreError, "saved conversations") as db:
            yield db

    def conversations(self, owner: str) -> list[ConversationInfo]:
        """The owner's conversations, the most recently continued first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS n "
                "FROM conversations c WHERE owner = ? ORDER BY updated_at DESC, rowid DESC",
                (owner,),
            ).fetchall()
        return [_info(row) for row in rows]

    def get(self, owner: str, conversation_id: str) -> ConversationInfo:
        """The owner's conversation by its id or a unique start of it."""
        if not conversation_id:
            raise ConversationNotFound("no conversation id given: `rag chat --list` shows them")
        with self._db() as db:
            rows = db.execute(
                "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS n "
                "FROM conversations c WHERE owner = ? AND id LIKE ? ESCAPE '\\' LIMIT 2",
                (owner, _prefix_pattern(conversation_id)),
            ).fetchall()
        if len(rows) != 1:
            why = "matches more than one" if len(rows) > 1 else "is not one of yours"
            raise ConversationNotFound(
                f"conversation {conversation_id!r} {why}: `rag chat --list` shows them"
            )
        return _info(rows[0])

    def create(self, owner: str, collection: str, first_question: str) -> str:
        """A new conversation titled by its first question; its id."""
        conversation_id, now = uuid.uuid4().hex, _now()
        with self._db() as db:
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, owner, collection, title_of(first_question), now, now),
            )
        return conversation_id

    def messages(self, owner: str, conversation_id: str) -> list[SavedMessage]:
        found = self.get(owner, conversation_id)
        with self._db() as db:
            rows = db.execute(
                "SELECT m.*, f.rating FROM messages m "
                "LEFT JOIN feedback f ON f.message_id = m.id AND f.owner = ? "
                "WHERE m.conversation_id = ? ORDER BY m.id",
                (owner, found.id),
            ).fetchall()
        return [
            SavedMessage(
                row["id"],
                row["role"],
                row["content"],
                json.loads(row["answer"]) if row["answer"] else None,
                row["sources_html"] or "",
                row["rating"],
            )
            for row in rows
        ]

    def add_turn(
        self,
        owner: str,
        conversation_id: str,
        question: str,
        reply: str,
        answer: dict[str, Any] | None = None,
        sources_html: str = "",
    ) -> int:
        """The question and its reply appended; the reply's message id (what feedback refers to)."""
        found, now = self.get(owner, conversation_id), _now()
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (?, 'user', ?, ?)",
                    (found.id, question, now),
                )
                cursor = db.execute(
                    "INSERT INTO messages (conversation_id, role, content, answer, sources_html, created_at) "
                    "VALUES (?, 'assistant', ?, ?, ?, ?)",
                    (found.id, reply, json.dumps(answer) if answer else None, sources_html, now),
                )
                db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, found.id))
        except ConversationStoreError as exc:  # deleted between the look-up and the insert (another tab)
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise ConversationNotFound(
                    f"conversation {conversation_id!r} was deleted meanwhile"
                ) from None
            raise
        return int(cursor.lastrowid or 0)

    def rename(self, owner: str, conversation_id: str, title: str) -> None:
        title = " ".join((title or "").split())[:TITLE_CHARS]
        if not title:
            raise RagError("a conversation's name cannot be empty")
        found = self.get(owner, conversation_id)
        with self._db() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, found.id))

    def delete(self, owner: str, conversation_id: str) -> None:
        found = self.get(owner, conversation_id)
        with self._db() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (found.id,))

    def rate(self, owner: str, message_id: int, rating: int, note: str = "") -> None:
        """The owner's rating (+1 or -1) of one of their answers, and an optional note; rating again replaces both."""
        if rating not in (-1, 1):
            raise RagError("a rating is +1 or -1")
        with self._db() as db:
            row = db.execute(
                "SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.id = ? AND c.owner = ? AND m.role = 'assistant'",
                (message_id, owner),
            ).fetchone()
            if row is None:
                raise ConversationNotFound("that answer is not in one of your conversations")
            db.execute(
                "INSERT INTO feedback (message_id, owner, rating, note, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id, owner) DO UPDATE SET rating = excluded.rating, "
                "note = excluded.note, "
                "created_at = excluded.created_at",
                (message_id, owner, rating, note.strip(), _now()),
            )

    def rated(self, collection: str | None = None) -> list[Rated]:
        """Every rated answer (of every owner: an export is the operator's), oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT f.message_id, f.rating, f.note, f.created_at AS rated_at, m.answer, c.collection, c.id AS cid, "
                "(SELECT q.content FROM messages q WHERE q.conversation_id = m.conversation_id "
                " AND q.id < m.id AND q.role = 'user' ORDER BY q.id DESC LIMIT 1) AS question "
                "FROM feedback f JOIN messages m ON m.id = f.message_id "
                "JOIN conversations c ON c.id = m.conversation_id "
                "WHERE (? IS NULL OR c.collection = ?) ORDER BY f.id",
                (collection, collection),
            ).fetchall()
        return [
            Rated(
                row["message_id"],
                row["rating"],
                row["note"],
                row["question"] or "",
                json.loads(row["answer"]) if row["answer"] else {},
                row["collection"],
                row["cid"],
                row["rated_at"],
            )
            for row in rows
        ]


def answer_record(answer: Answer) -> dict[str, Any]:
    """What is kept of an answer: its JSON as the API gives it, and every passage it was drawn from (not only the
    cited ones), so a rating can be judged later against what the pipeline saw."""
    return answer.as_json() | {"context": [asdict(s) for s in answer.context]}


def title_of(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1] + "…"


def _info(row: sqlite3.Row) -> ConversationInfo:
    return ConversationInfo(
        row["id"],
        row["title"],
        row["collection"],
        row["owner"],
        row["created_at"],
        row["updated_at"],
        row["n"],
    )


def _prefix_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
