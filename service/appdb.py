"""The app's own SQLite database in the data folder (`app.db`): saved conversations, feedback, users, grants, API
keys and the audit log. Shared by `rag ui`, `rag serve`, `rag chat` and `rag users`.

Each call opens its own connection (the UI and the API call from many worker threads; SQLite connections are cheap
and must not cross threads). The schema is versioned by `PRAGMA user_version` and migrated forward on the first
open; a file that is not a database, or one held by a writer for longer than LOCK_WAIT_S, is one RagError line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import RagError

FILE_NAME = "app.db"
LOCK_WAIT_S = 5.0

# Forward only, in order; a data folder's database is at version len(MIGRATIONS) after opening.
MIGRATIONS = (
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        collection TEXT NOT NULL,
        title TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX conversations_by_owner ON conversations (owner, updated_at);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        answer TEXT,         -- the assistant's Answer.as_json(), for feedback and exports
        sources_html TEXT,   -- the sources panel as it was shown
        created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    """,
    """
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (message_id, owner)
    );
    """,
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,      -- argon2id, never the password
        admin INTEGER NOT NULL DEFAULT 0, -- every collection, and the users
        created_at TEXT NOT NULL,
        password_changed_at TEXT NOT NULL -- sessions older than this end
    );
    CREATE TABLE grants (
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        collection TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('reader', 'editor', 'admin')),
        PRIMARY KEY (user, collection)
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,              -- the key's visible start, to name it when revoking
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        key_hash TEXT NOT NULL UNIQUE,    -- sha256 of the whole key (random, so no slow hash is needed)
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        collection TEXT,
        target TEXT,
        detail TEXT
    );
    CREATE INDEX audit_by_time ON audit (at);
    """,
)


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this database has not had, each in its own transaction with its version."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"made by a newer version of this app (schema {version}, this one knows {len(MIGRATIONS)})"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")


def looks_like_sqlite(path: Path) -> bool:
    """Whether the file starts as every SQLite database does (one that does not can hold no data of ours)."""
    try:
        with path.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return True  # unreadable: it may be one


class AppDatabaseError(RagError):
    """The app's database cannot be used (not a database, locked, unwritable)."""


class AppDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._migrated = False

    @contextmanager
    def transaction(self, unavailable: type[AppDatabaseError], what: str) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed on success), the schema migrated; SQLite's failures as one
        `unavailable` line: "{what} are unavailable"."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=LOCK_WAIT_S)
        except (OSError, sqlite3.Error) as exc:
            raise unavailable(f"{what} are unavailable ({self.path}: {exc})") from exc
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            if not self._migrated:
                migrate(db)
                self._migrated = True
            with db:
                yield db
        except sqlite3.Error as exc:
            raise unavailable(f"{what} are unavailable ({self.path}: {exc})") from exc
        finally:
            db.close()
