"""The embedded llama.cpp server: lifetime, supervision, concurrency; empty answers never pass as answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.llm import LLMClient
from rag.llm_server import EmbeddedServer, packaged_gguf
from tests.fake_llm import FakeLLM, fake_llm

pytestmark = pytest.mark.slow  # real servers and the embedded llama.cpp model

QUESTION = [{"role": "user", "content": "Name one colour of the sky."}]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of its own, started from a thread that ends at once (as a Gradio worker does)."""
    box: dict[str, EmbeddedServer] = {}
    starter = threading.Thread(
        target=lambda: box.setdefault("s", EmbeddedServer(packaged_gguf(), 2048, tmp_path))
    )
    starter.start()
    starter.join()
    yield box["s"]
    box["s"].stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_server_outlives_the_thread_that_started_it(server: EmbeddedServer) -> None:
    pid = server.process.pid
    time.sleep(10)
    assert server.died() is None, f"the server ended with its starting thread: {server.died()}"
    answer = LLMClient(None, None, None, 60, server).complete(QUESTION, max_tokens=16)
    assert answer.strip()
    assert server.restarts == 0 and server.process.pid == pid  # answered by the same process, not a restart


def test_server_dies_with_its_app_on_kill_9(tmp_path: Path) -> None:
    app = textwrap.dedent(
        f"""
        import threading, time
        from pathlib import Path
        from rag.llm_server import EmbeddedServer, packaged_gguf
        box = {{}}
        t = threading.Thread(target=lambda: box.setdefault("s", EmbeddedServer(packaged_gguf(), 2048, Path({str(tmp_path)!r}))))
        t.start(); t.join()
        print(box["s"].process.pid, flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", app], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    server_pid = int(process.stdout.readline())
    assert _alive(server_pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 5
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid), "the embedded server outlived its app"


def test_a_killed_server_is_restarted_for_the_next_question(server: EmbeddedServer) -> None:
    client = LLMClient(None, None, None, 60, server)
    assert client.complete(QUESTION, max_tokens=8).strip()
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    assert client.complete(QUESTION, max_tokens=8).strip()
    assert server.restarts == 1 and server.last_exit == "killed by SIGKILL"


def test_concurrent_questions_each_get_a_full_answer(server: EmbeddedServer) -> None:
    client = LLMClient(None, None, None, 120, server)
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            answers[i] = client.complete(
                [{"role": "user", "content": f"Count from {i} to {i + 5}."}], max_tokens=24
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    most_queued = 0
    while any(t.is_alive() for t in threads):
        most_queued = max(most_queued, client.queued())
        time.sleep(0.02)
    assert not errors
    assert most_queued >= 2 and client.queued() == 0  # the wait a status line reports, and none left over
    assert sorted(answers) == [0, 1, 2] and all(a.strip() for a in answers.values()), answers


@pytest.fixture
def scripted() -> Iterator[FakeLLM]:
    with fake_llm() as fake:
        yield fake


def test_an_empty_generation_is_retried_once(scripted: FakeLLM) -> None:
    scripted.script("", "Blue.")
    assert LLMClient(scripted.url, None, None, 10).complete(QUESTION, 8) == "Blue."
    assert len(scripted.requests) == 2


def test_two_empty_generations_are_an_error_not_an_answer(scripted: FakeLLM) -> None:
    scripted.script("", "  ")
    with pytest.raises(RagError, match="empty answer"):
        LLMClient(scripted.url, None, None, 10).complete(QUESTION, 8)
    assert len(scripted.requests) == 2
