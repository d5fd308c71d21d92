"""The LLM, always through the `openai` client: OpenAI, any OpenAI-compatible server, or the embedded one.

With no endpoint configured, the embedded server (rag.llm_server) answers: llama-cpp-python's OpenAI-compatible
server on 127.0.0.1 with the packaged SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import httpx
import openai

from rag.config import Settings
from rag.errors import RagError
from rag.llm_server import EmbeddedServer, embedded_server
from rag.text import first_line

log = logging.getLogger("rag.llm")

Message = dict[str, str]


@dataclass
class LLMInfo:
    host: str
    model: str
    embedded: bool

    def describe(self) -> str:
        where = "embedded llama.cpp server" if self.embedded else self.host
        return f"{self.model} @ {where}"


class LLMClient:
    """Chat completions with streaming; every failure becomes a one-line RagError without the key.

    With `server` (the embedded one), a server that has died is restarted before the request, and a request
    that found it dead before any token came is sent again once. Nothing else is retried by the client, so a
    timeout is the wait its setting names, not twice that: first_token_s for the first piece (or a silence
    between pieces), total_s for the whole answer.
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        model: str | None,
        first_token_s: float,
        server: EmbeddedServer | None = None,
        total_s: float = float("inf"),
    ) -> None:
        self._key = api_key or ""
        self.server = server
        self.first_token_s = first_token_s
        self.total_s = total_s
        self.client = openai.OpenAI(
            base_url=server.base_url if server else base_url,
            api_key=api_key or "not-needed",
            timeout=openai.Timeout(first_token_s, connect=min(first_token_s, 10.0)),
            max_retries=0,
        )
        self.model = model or self._first_model()

    @property
    def embedded(self) -> bool:
        return self.server is not None

    @property
    def host(self) -> str:
        return self.server.host if self.server else urlparse(str(self.client.base_url)).netloc

    @property
    def info(self) -> LLMInfo:
        return LLMInfo(self.host, self.model, self.embedded)

    def _first_model(self) -> str:
        try:
            models = self.client.models.list().data
        except openai.OpenAIError as exc:
            raise self._error(exc) from None
        if not models:
            raise RagError(f"the LLM endpoint at {self.host} lists no model: set RAG_LLM_MODEL")
        return str(models[0].id)

    def stream(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """The answer's pieces as they come. An empty answer is retried once, then an error: never a success.

        grammar (GBNF) constrains decoding on the embedded llama.cpp server; other endpoints ignore it here.
        """
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if stop:
            options["stop"] = stop[:4]  # OpenAI accepts at most four
        if grammar and self.embedded:
            options["extra_body"] = {"grammar": grammar}
        for attempt in (1, 2):
            self._revive()
            produced = False
            try:
                for piece in self._stream_once(messages, options):
                    produced = produced or bool(piece.strip())
                    yield piece
            except (openai.OpenAIError, httpx.HTTPError) as exc:
                if attempt == 1 and not produced and self.server and self.server.died():
                    continue  # it died before answering: restarted by _revive, asked again
                if produced and not isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
                    raise self._cut_off(exc) from None
                if isinstance(exc, httpx.HTTPError):
                    raise RagError(f"the LLM endpoint at {self.host} broke the connection ({exc})") from None
                raise self._error(exc) from None
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                # raw bytes, bad JSON or a wrong shape inside the stream: the openai client has no type for it
                raise RagError(
                    f"the LLM endpoint at {self.host} sent a reply that is not OpenAI's chat stream "
                    f"({type(exc).__name__}: {first_line(str(exc), 120)})"
                ) from None
            if produced:
                return
            log.warning("the model at %s returned an empty answer (attempt %d)", self.host, attempt)
        raise RagError(f"the model at {self.host} returned an empty answer twice; try again or rephrase")

    def queued(self) -> int:
        """Requests the embedded server is busy with or holds in its queue (0 for remote endpoints)."""
        return self.server.in_flight if self.server else 0

    def _stream_once(self, messages: list[Message], options: dict[str, Any]) -> Iterator[str]:
        counted = self.server.request() if self.server else nullcontext()
        started = time.monotonic()
        with counted:
            response = cast(
                "openai.Stream[Any]",
                self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    **options,
                ),
            )
            chunks = 0
            finished = False
            watchdog = _Watchdog(response, self.first_token_s, started + self.total_s)
            with response, watchdog:
                try:
                    for chunk in response:
                        chunks += 1
                        choices = getattr(chunk, "choices", None)  # a usage-only chunk may have none
                        if choices and choices[0].delta.content:
                            watchdog.content_came()
                            yield choices[0].delta.content
                        finished = finished or bool(choices and choices[0].finish_reason)
                        if time.monotonic() - started > self.total_s:
                            raise RagError(self._too_slow("total"))
                except (openai.OpenAIError, httpx.HTTPError, OSError, ValueError):
                    if watchdog.expired:
                        raise RagError(self._too_slow(watchdog.expired)) from None
                    raise
                if watchdog.expired:
                    raise RagError(self._too_slow(watchdog.expired))
            if chunks and not finished:  # "Wombats eat", then the connection closed: not an answer
                raise RagError(
                    f"the LLM endpoint at {self.host} stopped mid-answer (its stream ended without a finish "
                    "reason); the answer is incomplete"
                )
            if not chunks:
                raise RagError(
                    f"the LLM endpoint at {self.host} sent no chat completion chunk (its reply was "
                    f"{response.response.headers.get('content-type', 'untyped')}); is OPENAI_BASE_URL an "
                    "OpenAI-compatible /v1 address?"
                )

    def _too_slow(self, which: str) -> str:
        if which == "first":
            return (
                f"the LLM endpoint at {self.host} sent no answer text for {self.first_token_s:g} s "
                "(RAG_LLM_FIRST_TOKEN_TIMEOUT_S); stopped"
            )
        return f"the answer from {self.host} took longer than {self.total_s:g} s (RAG_LLM_TIMEOUT_S); stopped"

    def _revive(self) -> None:
        """Restart the embedded server if it died since the last request (a new port if its own was taken)."""
        if self.server is None:
            return
        self.server.ensure_running()
        if str(self.client.base_url).rstrip("/") != self.server.base_url:
            self.client = self.client.with_options(base_url=self.server.base_url)

    def complete(self, messages: list[Message], max_tokens: int, temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_tokens, temperature))

    def _cut_off(self, exc: Exception) -> RagError:
        """A stream that broke after the answer began: it was reported as "cannot reach the endpoint"."""
        if died := self._server_died():
            return died
        return RagError(
            f"the LLM endpoint at {self.host} stopped mid-answer ({type(exc).__name__}: "
            f"{first_line(str(exc), 120)}); the answer is incomplete"
        )

    def _server_died(self) -> RagError | None:
        """The error to give when the embedded server died during the answer, else None."""
        if self.server is not None and (ended := self.server.died()):
            return RagError(
                f"the embedded model server stopped during this answer ({ended}); "
                "it restarts with the next question"
            )
        return None

    def _error(self, exc: openai.OpenAIError) -> RagError:
        if died := self._server_died():
            return died
        if isinstance(exc, openai.APITimeoutError):
            text = (
                f"the LLM endpoint at {self.host} sent nothing for {self.first_token_s:g} s "
                "(RAG_LLM_FIRST_TOKEN_TIMEOUT_S)"
            )
        elif isinstance(exc, openai.APIConnectionError):
            text = (
                f"the embedded model server at {self.host} is not answering; see {self.server.log_path}"
                if self.server
                else f"cannot reach the LLM endpoint at {self.host} (is it running? check OPENAI_BASE_URL)"
            )
        elif isinstance(exc, openai.AuthenticationError):
            text = f"the LLM endpoint at {self.host} rejected the API key (check OPENAI_API_KEY)"
        elif isinstance(exc, openai.NotFoundError):
            text = f"the LLM endpoint at {self.host} does not know model {getattr(self, 'model', '?')!r} (check RAG_LLM_MODEL)"
        elif isinstance(exc, openai.APIStatusError):
            text = (
                f"the LLM endpoint at {self.host} answered HTTP {exc.status_code}: {first_line(exc.message)}"
            )
        else:
            text = f"LLM error from {self.host}: {first_line(str(exc))}"
        return RagError(self._redact(text))

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 else text


def open_llm(settings: Settings) -> LLMClient:
    """The configured endpoint (OPENAI_BASE_URL or OPENAI_API_KEY), else the embedded server."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if settings.openai_base_url or key:
        return LLMClient(
            settings.openai_base_url,
            key,
            settings.llm_model or _default_model(settings),
            settings.llm_first_token_timeout_s,
            total_s=settings.llm_timeout_s,
        )
    return LLMClient(
        None,
        None,
        settings.llm_model,
        settings.llm_first_token_timeout_s,
        embedded_server(settings),
        total_s=settings.llm_timeout_s,
    )


def _default_model(settings: Settings) -> str | None:
    """OpenAI itself needs a name; other servers are asked which model they serve."""
    return "gpt-4o-mini" if not settings.openai_base_url else None


def describe_llm(settings: Settings) -> dict[str, Any]:
    """What would answer, without starting anything."""
    if settings.openai_base_url or settings.openai_api_key:
        host = urlparse(settings.openai_base_url or "https://api.openai.com/v1").netloc
        return {
            "host": host,
            "model": settings.llm_model or _default_model(settings) or "(first listed)",
            "embedded": False,
        }
    return {
        "host": "127.0.0.1",
        "model": (settings.llm_gguf or Path("SmolLM2-135M-Instruct")).stem,
        "embedded": True,
    }


class _Watchdog:
    """Closes the response when its content is late: keep-alive comments (`: keep-alive`) and empty deltas are
    bytes, so they reset the HTTP read timeout, and an endpoint sending only them held `rag ask` for 114 s past
    both settings. The first piece of text is due within first_token_s, the whole answer by the deadline (wall
    clock). Closing the response makes the blocked read fail; `expired` says which limit it was."""

    def __init__(self, response: Any, first_token_s: float, deadline: float) -> None:
        self.response = response
        self.first_due = time.monotonic() + first_token_s
        self.deadline = deadline
        self.text_came = False
        self.expired = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="llm-watchdog", daemon=True)

    def content_came(self) -> None:
        self.text_came = True

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if not self.text_came and now > self.first_due:
                self.expired = "first"
            elif now > self.deadline:
                self.expired = "total"
            if self.expired:
                self.response.close()
                return
