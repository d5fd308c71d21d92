"""`rag ask` and `rag chat` on a terminal: signs of life at once, then the answer, sources and timings."""

from __future__ import annotations

import os
import select
import subprocess
import time

import pytest

from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # real servers and the embedded llama.cpp model


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("data")
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    env = cli_env(data) | {"RAG_COLLECTION": "test", "RAG_ANSWER_MODE": "generate"}  # the path with an LLM
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=env, check=True, timeout=300)
    return env


def _run_on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 300) -> tuple[str, float]:
    """Everything the command wrote to its terminal, and when its first byte came (s after start)."""
    master, slave = os.openpty()
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, first = b"", -1.0
    deadline = started + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            first = first if first >= 0 else time.monotonic() - started
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    assert process.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace"), first


def test_ask_on_a_terminal_says_what_it_does_before_answering(env: dict[str, str]) -> None:
    out, first = _run_on_a_terminal([RAG_BIN, "ask", "What do alpacas eat?"], env)
    assert first < 3.0, f"nothing on the terminal for {first:.1f} s"
    assert out.index("loading the models") < out.index("searching the documents") < out.index("Sources")
    assert "generating the answer" in out
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert last.startswith("(retrieve") and "first token" in last and "total" in last


def test_ask_quotes_the_documents_by_default(env: dict[str, str]) -> None:
    default = {k: v for k, v in env.items() if k != "RAG_ANSWER_MODE"}
    result = subprocess.run(
        [RAG_BIN, "ask", "What do alpacas eat?"], env=default, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Alpacas eat grass and hay. [1]")


def test_ask_in_a_pipe_prints_no_status_lines(env: dict[str, str]) -> None:
    result = subprocess.run(
        [RAG_BIN, "ask", "What do alpacas eat?"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "searching" not in result.stdout + result.stderr and "\r" not in result.stdout
    assert "guide.md" in result.stdout and result.stdout.rstrip().endswith(")")


def test_chat_keeps_the_conversation_until_new(env: dict[str, str]) -> None:
    lines = "What do alpacas eat?\nAre they smaller than llamas?\n/new\nWho painted the Mona Lisa?\n"
    result = subprocess.run(
        [RAG_BIN, "chat"], env=env, input=lines, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("(retrieve") == 3 and "(new conversation)" in out
    assert "guide.md" in out.split("(new conversation)")[0]
    assert "do not hold an answer" in out.split("(new conversation)")[1]  # off-topic: refused
