"""One rule for every route the web server exposes: with users (service/accounts.py), RAG_API_KEY or a UI login set,
a request gets through only with a key as a bearer token (the API) or a live session of the UI's login (the UI and
Gradio's own API), except the login page itself and the API's description. Gradio protects only some of its routes
(`/gradio_api/run/...`, `/config`), so the rule sits in front of everything, and a route added later is covered
without a word. Who the request is (a Principal) travels on to the routes in `scope["state"]["principal"]`; what
each route lets them do is the routes' business (api/roles.py, ui/roles.py)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
from starlette.requests import HTTPConnection

from service.accounts import OPEN, SCRIPT_KEY, Accounts, Principal
from service.asgi import ASGIApp, Receive, Scope, Send

API_PREFIXES = ("/v1/", "/health")
# The citation viewer: opened from the UI (its login) and by API clients from an answer's sources (the key).
EITHER_PREFIXES = ("/view/",)
# What a browser needs before it has logged in (the login page, its scripts, styles and icons) and the API's
# description (no data); everything else is refused without credentials. docs/api.md, "Who can reach what".
PUBLIC_EXACT = frozenset(
    {"/", "/logout", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json"}
    | {"/gradio_api/theme.css", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")


@dataclass(frozen=True)
class Credentials:
    """What the server asks for. `api_key` is a bearer token of /v1 and /health: RAG_API_KEY, else (without users)
    the UI password, so a login on the UI never leaves the API open. `login` is the UI's (user, password), or None
    for "any name, RAG_API_KEY as the password". With `accounts` (users exist), logins and keys are the users';
    RAG_API_KEY stays an admin key for scripts, and the single UI login is not used."""

    api_key: str | None
    login: tuple[str, str] | None
    accounts: Accounts | None = None
    session_hours: float = 12.0

    @classmethod
    def of(
        cls,
        api_key: str | None,
        user: str | None,
        password: str | None,
        accounts: Accounts | None = None,
        session_hours: float = 12.0,
    ) -> Credentials:
        if accounts is not None:
            return cls(api_key, None, accounts, session_hours)
        login = (user, password) if user and password else None
        return cls(api_key or (password if login else None), login, None, session_hours)

    @property
    def required(self) -> bool:
        return self.api_key is not None or self.accounts is not None

    def gradio_auth(self) -> Callable[[str, str], Any] | None:
        """What Gradio's login checks: a user's password, the UI login, or the API key as the password (any user
        name)."""
        if self.accounts is not None:
            accounts = self.accounts

            async def verify(user: str, password: str) -> bool:  # argon2 takes ~0.1 s: not on the event loop
                return await anyio.to_thread.run_sync(accounts.verify, user, password)

            return verify
        if not self.required:
            return None
        login, key = self.login, self.api_key or ""
        if login:
            return lambda user, password: _same(user, login[0]) and _same(password, login[1])
        return lambda _user, password: _same(password, key)

    def bearer_principal(self, connection: HTTPConnection) -> Principal | None:
        """Whose bearer key this is: RAG_API_KEY (an admin), a user's live key, or no one."""
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        if _same(given, self.api_key or ""):
            return SCRIPT_KEY if self.accounts is not None else OPEN
        return self.accounts.principal_for_key(given) if self.accounts is not None else None

    def session_principal(self, user: str | None, since: datetime) -> Principal | None:
        """Who a live UI session (of `user`, begun at `since`) is: the user as they are now (None once removed or
        their password changed), or everyone without users."""
        if user is None:
            return None
        if self.accounts is None:
            return OPEN
        return self.accounts.principal(user, since)


def _same(given: str, expected: str) -> bool:
    return bool(expected) and secrets.compare_digest(given.encode(), expected.encode())


Session = tuple[str, datetime]  # a live UI session's user, and when it began


class AccessGate:
    """ASGI middleware, outermost: the API's paths need a bearer key, every other path a live session of the UI's
    login, except the public ones. `sessions` gives a request's live Gradio session (its cookie holds a token
    Gradio's /login handed out, not yet expired), or None. The request's Principal goes on in its scope."""

    def __init__(
        self, app: ASGIApp, credentials: Credentials, sessions: Callable[[HTTPConnection], Session | None]
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        public, principal = self._principal(scope)
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
        if public or principal is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _unauthorized(send, scope["path"].startswith(API_PREFIXES))

    def _principal(self, scope: Scope) -> tuple[bool, Principal | None]:
        """(whether the path is public, who is asking): nobody may pass where neither holds."""
        if not self.credentials.required:
            return True, OPEN
        path, connection = scope["path"], HTTPConnection(scope)
        if path.startswith(API_PREFIXES):
            return False, self.credentials.bearer_principal(connection)
        if path.startswith(EITHER_PREFIXES):
            by_key = self.credentials.bearer_principal(connection)
            if by_key is not None:
                return False, by_key
        session = self.sessions(connection)
        principal = self.credentials.session_principal(*session) if session else None
        return is_public(path, scope.get("method", "GET")), principal


def principal_of(connection: HTTPConnection) -> Principal | None:
    """Who the gate let through with this request (None: not through the gate)."""
    found = connection.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


class SessionBook:
    """When each UI session token was handed out (read from /login's answer by service.throttle), so a session's age,
    and whether it began before its password changed, count from its login, not from its first use. A token not in
    the book (or too old) is no session."""

    def __init__(self, hours: float) -> None:
        self.limit = timedelta(hours=hours)
        self._issued: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def issued(self, token: str) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for old in [t for t, at in self._issued.items() if now - at > self.limit]:
                del self._issued[old]
            self._issued[token] = now

    def began(self, token: str) -> datetime | None:
        with self._lock:
            start = self._issued.get(token)
            if start is not None and datetime.now(UTC) - start > self.limit:
                del self._issued[token]
                start = None
        return start


def is_public(path: str, method: str) -> bool:
    if path == "/login" or path == "/login/":
        return method == "POST"  # the login form's target; Gradio has no page there
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


async def _unauthorized(send: Send, api: bool) -> None:
    message = (
        "missing or wrong API key (Authorization: Bearer RAG_API_KEY)"
        if api
        else "log in first: open / in a browser, or use gradio_client's auth=(user, password)"
    )
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
