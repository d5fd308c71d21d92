"""Users, their roles per collection, their API keys, and the audit log, in the app's database (service/appdb.py).

With no user in it the app is as before: open (or behind the one RAG_API_KEY / UI login), everyone an admin. Once
one exists, every request is someone's: a UI session (Gradio's login, checked here) or a bearer key (a user's, or
RAG_API_KEY as an admin for scripts), and what it may do in a collection is its role there (Role)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from sqlite3 import Connection, IntegrityError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag.errors import RagError
from rag.store import check_collection_name
from service.appdb import AppDatabase, AppDatabaseError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
PASSWORD_MIN_CHARS = 8
KEY_PREFIX = "rag-"


class Role(IntEnum):
    """What a user may do in one collection; each includes the ones below it."""

    READER = 1  # ask, read its documents and sources
    EDITOR = 2  # upload, delete documents, cancel ingestion, train or uninstall its reranker
    ADMIN = 3  # all, and grants (from the command line)

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise RagError(f"unknown role {text!r}: reader, editor or admin") from None


class AccountsError(AppDatabaseError):
    """The accounts cannot be read or written (the database is not one, locked, unwritable)."""


class Forbidden(RagError):
    """This user may not do that in that collection (API: 403)."""


class NotLoggedIn(RagError):
    """No one, or a removed user, is asking (API: 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user with their roles, or everyone when the app has no accounts."""

    name: str
    admin: bool = False  # every collection at ADMIN, and the users
    grants: Mapping[str, Role] = field(default_factory=dict)

    def role(self, collection: str) -> Role | None:
        return Role.ADMIN if self.admin else self.grants.get(collection)

    def may(self, collection: str, needed: Role) -> bool:
        role = self.role(collection)
        return role is not None and role >= needed

    def require(self, collection: str, needed: Role) -> None:
        """Forbidden unless this user's role in the collection is `needed` or above. The message names only what
        the asker named, so it says nothing of whether the collection exists."""
        if not self.may(collection, needed):
            has = self.role(collection)
            why = f"your role there is {has.label}" if has else "you have no access to it"
            raise Forbidden(f"{needed.label} access to collection {collection!r} is needed; {why}")

    def readable(self, names: Iterable[str]) -> list[str]:
        """Of these collections, those this user may read."""
        return sorted(name for name in set(names) if self.may(name, Role.READER))

    def visible(self, names: Iterable[str]) -> list[str]:
        """Of these collections, those this user may read; a user's granted collections that do not exist yet are
        listed too (an editor's uploads create them)."""
        if self.admin:
            return sorted(set(names))
        return sorted(self.grants)


OPEN = Principal("", admin=True)  # no accounts: everyone may do everything, as before accounts existed
SCRIPT_KEY = Principal("RAG_API_KEY", admin=True)


@dataclass(frozen=True)
class UserInfo:
    name: str
    admin: bool
    created_at: str
    grants: dict[str, Role]
    keys: list[str]  # the visible starts of the user's live keys


@dataclass(frozen=True)
class AuditEntry:
    at: str
    actor: str
    action: str
    collection: str
    target: str
    detail: str


class Accounts:
    def __init__(self, database: AppDatabase) -> None:
        self.database = database
        self.hasher = PasswordHasher()
        self._decoy = ""  # a hash verified for unknown names, so they take the same time; made at first need

    @contextmanager
    def _db(self) -> Iterator[Connection]:
        with self.database.transaction(AccountsError, "accounts") as db:
            yield db

    def exist(self) -> bool:
        """Whether any user exists: with none, the app stays open as before. Asking creates no database."""
        if not self.database.path.exists():
            return False
        with self._db() as db:
            return db.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()[0] == 1

    # ------------------------------------------------------------------ users

    def add(self, name: str, password: str, admin: bool = False) -> None:
        name = check_user_name(name)
        hashed = self.hasher.hash(check_password(password))
        now = _now()
        try:
            with self._db() as db:
                db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)", (name, hashed, int(admin), now, now))
        except AccountsError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise RagError(
                    f"user {name!r} already exists (`rag users passwd {name}` changes the password)"
                ) from None
            raise

    def set_password(self, name: str, password: str) -> None:
        """A new password; the user's open sessions end."""
        hashed = self.hasher.hash(check_password(password))
        with self._db() as db:
            changed = db.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE name = ?",
                (hashed, _now(), name),
            ).rowcount
        if not changed:
            raise _no_user(name)

    def remove(self, name: str) -> None:
        """The user, their grants, keys, saved conversations and ratings (a later user of the same name must not
        find them)."""
        with self._db() as db:
            if not db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise _no_user(name)
            db.execute("DELETE FROM feedback WHERE owner = ?", (name,))
            db.execute("DELETE FROM conversations WHERE owner = ?", (name,))

    def users(self) -> list[UserInfo]:
        with self._db() as db:
            users = db.execute("SELECT name, admin, created_at FROM users ORDER BY name").fetchall()
            grants = db.execute("SELECT user, collection, role FROM grants ORDER BY collection").fetchall()
            keys = db.execute(
                "SELECT user, id FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at"
            ).fetchall()
        return [
            UserInfo(
                u["name"],
                bool(u["admin"]),
                u["created_at"],
                {g["collection"]: Role[g["role"].upper()] for g in grants if g["user"] == u["name"]},
                [k["id"] for k in keys if k["user"] == u["name"]],
            )
            for u in users
        ]

    def verify(self, name: str, password: str) -> bool:
        """Whether this is the user's password (argon2id); an unknown name costs the same time."""
        with self._db() as db:
            row = db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None and not self._decoy:
            self._decoy = self.hasher.hash(secrets.token_hex(16))
        try:
            return (
                self.hasher.verify(row["password_hash"] if row else self._decoy, password) and row is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def principal(self, name: str, since: datetime | None = None) -> Principal | None:
        """The user with their roles as they are now; None for a removed user, or for a session begun (`since`)
        before the user's password last changed."""
        with self._db() as db:
            user = db.execute(
                "SELECT admin, password_changed_at FROM users WHERE name = ?", (name,)
            ).fetchone()
            if user is None:
                return None
            if since is not None and datetime.fromisoformat(user["password_changed_at"]) > since:
                return None
            rows = db.execute("SELECT collection, role FROM grants WHERE user = ?", (name,)).fetchall()
        return Principal(name, bool(user["admin"]), {r["collection"]: Role[r["role"].upper()] for r in rows})

    # ------------------------------------------------------------------ grants

    def grant(self, name: str, collection: str, role: Role) -> None:
        """The user's role in the collection (which need not exist yet: an editor's upload creates it)."""
        check_collection_name(collection)
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise _no_user(name)
            db.execute(
                "INSERT INTO grants VALUES (?, ?, ?) ON CONFLICT (user, collection) DO UPDATE SET role = excluded.role",
                (name, collection, role.label),
            )

    def revoke(self, name: str, collection: str) -> None:
        with self._db() as db:
            if not db.execute(
                "DELETE FROM grants WHERE user = ? AND collection = ?", (name, collection)
            ).rowcount:
                raise RagError(f"user {name!r} has no role in collection {collection!r}")

    # ------------------------------------------------------------------ API keys

    def new_key(self, name: str) -> str:
        """A new key for the user, returned once: only its hash and its visible start are kept."""
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise _no_user(name)
            db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL)", (key_id, name, _digest(key), _now()))
        return key

    def revoke_key(self, key_id: str) -> str:
        """Revoke a key by its visible start (`rag-1a2b3c4d`, or the 8 hex digits); the user it was theirs."""
        key_id = key_id.strip().removeprefix(KEY_PREFIX)[:8]
        with self._db() as db:
            row = db.execute(
                "SELECT user FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)
            ).fetchone()
            if row is None:
                raise RagError(f"no live API key starts {KEY_PREFIX}{key_id} (`rag users list` shows them)")
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (_now(), key_id))
        return str(row["user"])

    def principal_for_key(self, key: str) -> Principal | None:
        """The user whose live key this is, or None (unknown or revoked: refused at once)."""
        if not key.startswith(KEY_PREFIX):
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT user FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL", (_digest(key),)
            ).fetchone()
        return self.principal(row["user"]) if row else None

    # ------------------------------------------------------------------ audit

    def record(
        self,
        actor: str,
        action: str,
        collection: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> None:
        """One line of the audit log: who did what, where, to what."""
        with self._db() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, collection, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), actor, action, collection, target, detail),
            )

    def audit_log(self, limit: int = 100, actor: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        where, args = ("WHERE actor = ?", (actor,)) if actor else ("", ())
        with self._db() as db:
            rows = db.execute(
                f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [
            AuditEntry(
                r["at"], r["actor"], r["action"], r["collection"] or "", r["target"] or "", r["detail"] or ""
            )
            for r in rows
        ]


def check_user_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise RagError(
            f"bad user name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_CHARS:
        raise RagError(f"the password must have at least {PASSWORD_MIN_CHARS} characters")
    return password


def _no_user(name: str) -> RagError:
    return RagError(f"no user {name!r} (`rag users list` shows them)")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
