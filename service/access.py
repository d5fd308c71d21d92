"""One rule for every route the web server exposes: with RAG_API_KEY or a UI login set, a request gets through
only with the key as a bearer token (the API) or a session of the UI's login (the UI and Gradio's own API), except
the login page itself and the API's description. Gradio protects only some of its routes (`/gradio_api/run/...`,
`/config`), so the rule sits in front of everything, and a route added later is covered without a word."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

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
    """What the server asks for. `api_key` is the bearer token of /v1 and /health: RAG_API_KEY, else the UI
    password, so a login on the UI never leaves the API open. `login` is the UI's (user, password), or None for
    "any name, RAG_API_KEY as the password"."""

    api_key: str | None
    login: tuple[str, str] | None

    @classmethod
    def of(cls, api_key: str | None, user: str | None, password: str | None) -> Credentials:
        login = (user, password) if user and password else None
        return cls(api_key or (password if login else None), login)

    @property
    def required(self) -> bool:
        return self.api_key is not None

    def gradio_auth(self) -> Callable[[str, str], bool] | None:
        """What Gradio's login checks: the UI login, or the API key as the password (any user name)."""
        if not self.required:
            return None
        login, key = self.login, self.api_key or ""
        if login:
            return lambda user, password: _same(user, login[0]) and _same(password, login[1])
        return lambda _user, password: _same(password, key)

    def bearer_ok(self, connection: HTTPConnection) -> bool:
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and _same(given.strip(), self.api_key or "")


def _same(given: str, expected: str) -> bool:
    return bool(expected) and secrets.compare_digest(given.encode(), expected.encode())


class AccessGate:
    """ASGI middleware, outermost: the API's paths need the bearer key, every other path a session of the UI's
    login, except the public ones. `sessions` says whether a request carries a live Gradio session (its cookie
    holds a token Gradio's /login handed out)."""

    def __init__(
        self, app: ASGIApp, credentials: Credentials, sessions: Callable[[HTTPConnection], bool]
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _unauthorized(send, scope["path"].startswith(API_PREFIXES))

    def _allowed(self, scope: Scope) -> bool:
        if not self.credentials.required:
            return True
        path = scope["path"]
        connection = HTTPConnection(scope)
        if path.startswith(API_PREFIXES):
            return self.credentials.bearer_ok(connection)
        if is_public(path, scope.get("method", "GET")):
            return True
        if path.startswith(EITHER_PREFIXES) and self.credentials.bearer_ok(connection):
            return True
        return self.sessions(connection)


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
