"""A scripted OpenAI-compatible endpoint for fast tests of what the app does with an LLM's replies.

It speaks the wire protocol the `openai` client expects (/v1/models, streamed /v1/chat/completions), so the app's
real client code runs; only the model is replaced, by replies the test writes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLLM:
    """Replies in order (each streamed in word-sized pieces); every request's messages are kept."""

    def __init__(self) -> None:
        self.replies: list[str] = []
        self.requests: list[list[dict[str, Any]]] = []
        self.url = ""
        self.posts = 0  # completions requests received, answered or not
        self.delay_s = 0.0  # before the reply's first byte
        self.raw: tuple[str, bytes] | None = None  # (content type, body) sent instead of a proper stream
        self.unsent = 0  # bytes the reply's Content-Length promises beyond its body: the connection breaks
        self.keepalive_s = 0.0  # sends only SSE keep-alive comments, this often, for up to 30 s

    def script(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests = []

    def next_reply(self, messages: list[dict[str, Any]]) -> str:
        self.requests.append(messages)
        return self.replies.pop(0) if self.replies else ""


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /v1/models
            self._send("application/json", json.dumps({"object": "list", "data": [{"id": "fake"}]}))

        def do_POST(self) -> None:  # /v1/chat/completions with stream=True
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            fake.posts += 1
            time.sleep(fake.delay_s)
            if fake.raw is not None:
                self._send(fake.raw[0], fake.raw[1])
                return
            if fake.keepalive_s:
                self._keep_alive()
                return
            text = fake.next_reply(body["messages"])
            pieces = [p for p in text.replace(" ", " \0").split("\0") if p]
            deltas = [{"content": p} for p in pieces] + [{}]
            events = [
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "fake",
                    "choices": [{"index": 0, "delta": d, "finish_reason": None if d else "stop"}],
                }
                for d in deltas
            ]
            stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send("text/event-stream", stream)

        def _keep_alive(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.close_connection = True
            ends = time.monotonic() + 30
            try:
                while time.monotonic() < ends:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    time.sleep(fake.keepalive_s)
            except OSError:  # the client gave up: what the test wants
                pass

        def _send(self, kind: str, body: str | bytes) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data) + fake.unsent))
            self.end_headers()
            self.wfile.write(data)
            if fake.unsent:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield fake
    finally:
        fake.delay_s = 0.0  # a sleeping handler would hold shutdown
        httpd.shutdown()
        httpd.server_close()
