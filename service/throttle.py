"""Repeated failed logins, from one address or for one user name, are slowed down: Gradio's /login answers every
guess at once."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from starlette.requests import Request

from service.asgi import ASGIApp, Message, Receive, Scope, Send

FREE_FAILURES = 5  # typos cost nothing; after the fifth failure in a row, each costs twice the last wait
MAX_WAIT_S = 300.0
MAX_CLIENTS = 10_000  # addresses and user names remembered; past that the oldest are forgotten
MAX_FORM_BYTES = 64 << 10  # a login form is a name and a password


class LoginThrottle:
    """ASGI middleware: after FREE_FAILURES failed POSTs to /login from one address, or for one user name from
    anywhere, that address (or name) gets 429 with Retry-After until its wait (2 s, 4 s, ... 5 min) is over,
    whatever the password, so guessing cannot go on at full speed, nor spread over many addresses; a success clears
    both counts. `issued` hears of each session token a successful login hands out (service.access.SessionBook)."""

    def __init__(
        self,
        app: ASGIApp,
        clock: Callable[[], float] = time.monotonic,
        issued: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self.issued = issued
        # ("address", ip) or ("user", name): (failures in a row, locked until)
        self.failures: dict[tuple[str, str], tuple[int, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        form, replay = await _read_form(scope, receive)
        if form is None:
            await _answer(send, 413, {"detail": "a login form is a name and a password"})
            return
        keys = [("address", (scope.get("client") or ("?",))[0])]
        if form.get("username", "").strip():  # as Gradio reads it: "alice " is alice
            keys.append(("user", form["username"].strip()))
        locked = [
            (key, until) for key in keys if self.clock() < (until := self.failures.get(key, (0, 0.0))[1])
        ]
        if locked:
            key, until = max(locked, key=lambda pair: pair[1])
            await _too_many(send, math.ceil(until - self.clock()), key[0])
            return
        status = await self._login(scope, replay, send)
        for key in keys:
            if status == 400:
                self._failed(key, self.failures.get(key, (0, 0.0))[0] + 1)
            elif status < 400:
                self.failures.pop(key, None)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Gradio's /login, its status, and the session token it hands out told to `issued`."""
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                if status[0] == 200 and self.issued is not None:
                    for token in _session_tokens(message.get("headers", [])):
                        self.issued(token)
            await send(message)

        await self.app(scope, receive, watch)
        return status[0] if status else 500

    def _failed(self, key: tuple[str, str], count: int) -> None:
        wait = min(MAX_WAIT_S, 2.0 ** (count - FREE_FAILURES + 1)) if count >= FREE_FAILURES else 0.0
        self.failures.pop(key, None)  # re-inserted last: the dict's order is the age
        self.failures[key] = (count, self.clock() + wait)
        while len(self.failures) > MAX_CLIENTS:
            del self.failures[next(iter(self.failures))]


def _session_tokens(headers: list[tuple[bytes, bytes]]) -> set[str]:
    """The values of the access-token cookies a response sets (Gradio sets the same token under two names)."""
    tokens = set()
    for name, value in headers:
        if name.lower() == b"set-cookie":
            cookie, _, _ = value.decode("latin-1").partition(";")
            key, _, token = cookie.partition("=")
            if key.strip().startswith("access-token") and token.strip('" '):
                tokens.add(token.strip('" '))
    return tokens


async def _read_form(scope: Scope, receive: Receive) -> tuple[dict[str, str] | None, Receive]:
    """The login form's text fields (urlencoded or multipart; None for a body over MAX_FORM_BYTES), and a receive
    that gives the app the same body."""
    messages: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_FORM_BYTES:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = bool(message.get("more_body"))
    if size > MAX_FORM_BYTES:
        return None, _replaying(messages, receive)
    fields: dict[str, str] = {}
    if not more:  # whole: parsed as the app will parse it
        try:
            form = await Request(scope, _replaying(list(messages), receive)).form()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        except Exception:  # a malformed form: the app refuses it; only the address is counted
            fields = {}
    return fields, _replaying(messages, receive)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def _too_many(send: Send, wait_s: int, what: str) -> None:
    who = "this address" if what == "address" else "this user"
    detail = {"detail": f"too many failed logins for {who}; try again in {wait_s} s"}
    await _answer(send, 429, detail, [(b"retry-after", str(wait_s).encode())])


async def _answer(
    send: Send, status: int, detail: dict[str, str], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(detail).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
