from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import rag  # noqa: F401  (sets the offline environment before anything loads a model)
from rag.config import Settings
from rag.embedder import LocalEmbedder, get_embedder

REPO = Path(__file__).resolve().parent.parent
RAG_BIN = str(Path(sys.executable).parent / "rag")
CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts"  # the browser tests' screenshots
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per test module."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session", autouse=True)
def embedder() -> LocalEmbedder:
    """The default embedder; loaded first in every session so the ONNX export a fresh machine makes once is
    done here, not inside a launched process whose output a test reads."""
    return get_embedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", collection="test")


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    """The server code path (QDRANT_URL) through qdrant-client's local mode."""
    return Settings(data_dir=tmp_path / "data", collection="test", qdrant_url=f"path:{tmp_path / 'qdrant'}")


def cli_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RAG_DATA_DIR"] = str(data_dir)
    env.pop("QDRANT_URL", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def launched(
    command: str, data: Path, env: dict[str, str], timeout_s: float
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`rag <command> --port N` on a free loopback port, yielded once the port accepts connections, stopped at
    the end; its output goes to data/<command>.log, shown if it exits before its port opens."""
    port = free_port()
    log_path = data / f"{command}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [RAG_BIN, command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    time.sleep(0.3)
            yield port, process
        finally:
            process.terminate()
            process.wait(timeout=30)
