"""What the app does when an OpenAI-compatible endpoint misbehaves: one clear line, never a traceback, never an
empty answer passed off as one, and a timeout that is what its setting says."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.errors import RagError
from rag.llm import LLMClient, open_llm
from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus
from tests.fake_llm import FakeLLM, fake_llm
from tests.test_ingest import run_ingest

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def fake() -> Iterator[FakeLLM]:
    with fake_llm() as endpoint:
        yield endpoint


def _client(fake: FakeLLM, **settings: float) -> LLMClient:
    return open_llm(Settings(openai_base_url=fake.url, llm_model="fake", **settings))


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("application/octet-stream", bytes(range(256)) * 4, "not OpenAI's chat stream"),
        ("text/event-stream", b"data: {not json}\n\n", "not OpenAI's chat stream"),
        ("text/event-stream", b'data: {"choices": 5}\n\n', "not OpenAI's chat stream"),
        ("text/html", b"<html><body>Welcome to nginx!</body></html>", "no chat completion chunk"),
    ],
)
def test_a_reply_that_is_not_a_chat_stream_is_one_clear_error(
    fake: FakeLLM, kind: str, body: bytes, reason: str
) -> None:
    """Raw bytes and bad JSON were a UnicodeDecodeError/JSONDecodeError traceback; an HTML page was reported as
    'returned an empty answer twice', as if the model had said nothing."""
    fake.raw = (kind, body)
    with pytest.raises(RagError, match=reason) as caught:
        "".join(_client(fake).stream(HI, 10))
    assert "\n" not in str(caught.value) and fake.url.split("/")[2] in str(caught.value)
    assert fake.posts == 1  # a broken endpoint is not asked twice


CUT_STREAM = b'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [{"index": 0, "delta": {"content": "Wombats eat"}, "finish_reason": null}]}\n\n'


@pytest.mark.parametrize("unsent", [0, 1000], ids=["closed without finish", "connection broken"])
def test_an_answer_cut_off_mid_stream_is_an_error_not_an_answer(fake: FakeLLM, unsent: int) -> None:
    """ "Wombats eat", then the stream ended without finish_reason or [DONE]: served as a complete answer; a
    connection broken mid-answer was reported as "cannot reach the LLM endpoint"."""
    fake.raw, fake.unsent = ("text/event-stream", CUT_STREAM), unsent
    pieces: list[str] = []
    with pytest.raises(RagError, match="stopped mid-answer .*the answer is incomplete") as caught:
        for piece in _client(fake).stream(HI, 10):
            pieces.append(piece)
    assert "".join(pieces) == "Wombats eat" and "cannot reach" not in str(caught.value)


def test_first_token_timeout_is_the_setting_and_not_retried(fake: FakeLLM) -> None:
    """The client retried a timeout once, so a chat waited twice the setting; now it is one wait, named."""
    fake.delay_s = 3.0
    with pytest.raises(RagError, match=r"sent nothing for 1 s \(RAG_LLM_FIRST_TOKEN_TIMEOUT_S\)"):
        "".join(_client(fake, llm_first_token_timeout_s=1).stream(HI, 10))
    assert fake.posts == 1


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"llm_first_token_timeout_s": 2, "llm_timeout_s": 60}, "RAG_LLM_FIRST_TOKEN_TIMEOUT_S"),
        ({"llm_first_token_timeout_s": 60, "llm_timeout_s": 3}, "RAG_LLM_TIMEOUT_S"),
    ],
)
def test_keep_alive_comments_do_not_hold_off_the_timeouts(
    fake: FakeLLM, limits: dict[str, float], named: str
) -> None:
    """An endpoint sending only `: keep-alive` lines held rag ask for 114 s with timeouts of 5 and 12 s: they
    count answer text and wall-clock time, not bytes."""
    fake.keepalive_s = 0.3
    started = time.monotonic()
    with pytest.raises(RagError, match=named):
        "".join(_client(fake, **limits).stream(HI, 10))
    assert time.monotonic() - started < 10


def test_total_timeout_stops_a_slow_answer(fake: FakeLLM) -> None:
    fake.script(" ".join(["word"] * 50))
    fake.raw = None
    client = _client(fake, llm_timeout_s=0.0001)
    with pytest.raises(RagError, match=r"took longer than .* \(RAG_LLM_TIMEOUT_S\)"):
        "".join(client.stream(HI, 100))


def _ask_in_generate_mode(tmp_path: Path, fake: FakeLLM) -> subprocess.CompletedProcess[str]:
    """`rag ask` over a small collection, answered by the fake endpoint as it is set up."""
    settings = Settings(data_dir=tmp_path / "data", collection="generated")
    run_ingest(settings, make_corpus(tmp_path / "corpus"))
    env = cli_env(settings.data_dir) | {
        "RAG_ANSWER_MODE": "generate",
        "OPENAI_BASE_URL": fake.url,
        "RAG_LLM_MODEL": "fake",
        "RAG_COLLECTION": "generated",
    }
    return subprocess.run(
        [RAG_BIN, "ask", "What do alpacas eat?"], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_with_a_garbage_endpoint_exits_2_with_one_line(
    tmp_path: Path, embedder: LocalEmbedder, fake: FakeLLM
) -> None:
    fake.raw = ("application/octet-stream", bytes(range(256)) * 4)
    result = _ask_in_generate_mode(tmp_path, fake)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: the LLM endpoint at 127.0.0.1:")


def test_rag_ask_with_a_cut_off_answer_exits_2(
    tmp_path: Path, embedder: LocalEmbedder, fake: FakeLLM
) -> None:
    """It printed "Wombats eat" and exited 0."""
    fake.raw = ("text/event-stream", CUT_STREAM)
    result = _ask_in_generate_mode(tmp_path, fake)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "stopped mid-answer" in result.stderr and "Traceback" not in result.stderr
