"""Repeated failed logins from one address are slowed down: Gradio's /login answers every guess at once."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from service.asgi import ASGIApp, Message, Receive, Scope, Send

FREE_FAILURES = 5  # typos cost nothing; after the fifth failure in a row, each costs twice the last wait
MAX_WAIT_S = 300.0
MAX_CLIENTS = 10_000  # addresses remembered; past that the oldest are forgotten


class LoginThrottle:
    """ASGI middleware: after FREE_FAILURES failed POSTs to /login from one address, that address gets 429 with
    Retry-After until its wait (2 s, 4 s, ... 5 min) is over, whatever the password, so guessing cannot go on at
    full speed; a success clears its count."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.failures: dict[str, tuple[int, float]] = {}  # address: (failures in a row, locked until)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?",))[0]
        count, until = self.failures.get(client, (0, 0.0))
        if self.clock() < until:
            await _too_many(send, math.ceil(until - self.clock()))
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 400:
            self._failed(client, count + 1)
        elif status and status[0] < 400:
            self.failures.pop(client, None)

    def _failed(self, client: str, count: int) -> None:
        wait = min(MAX_WAIT_S, 2.0 ** (count - FREE_FAILURES + 1)) if count >= FREE_FAILURES else 0.0
        self.failures.pop(client, None)  # re-inserted last: the dict's order is the age
        self.failures[client] = (count, self.clock() + wait)
        while len(self.failures) > MAX_CLIENTS:
            del self.failures[next(iter(self.failures))]


async def _too_many(send: Send, wait_s: int) -> None:
    body = json.dumps(
        {"detail": f"too many failed logins from this address; try again in {wait_s} s"}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(wait_s).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
