"""kill -9 at any moment, then a re-run: the store ends exactly as after one clean run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from rag.config import Settings
from tests.conftest import RAG_BIN, cli_env
from tests.test_ingest import snapshot

ANIMALS = ["llama", "alpaca", "vicuna", "guanaco", "camel", "yak", "bison", "moose", "elk", "ibex"]


def make_big_corpus(root: Path, files: int = 24) -> None:
    root.mkdir(parents=True)
    for i in range(files):
        animal = ANIMALS[i % len(ANIMALS)]
        body = "\n\n".join(
            f"Section {j} of note {i}: the {animal} number {i * 10 + j} eats {j + 1} kinds of grass. " * 12
            for j in range(4)
        )
        (root / f"note_{i:02d}.md").write_text(f"# Note {i} on the {animal}\n\n{body}\n")


def start(root: Path, data: Path) -> subprocess.Popen[str]:
    env = cli_env(data) | {"RAG_EMBED_BATCH_SIZE": "2", "RAG_COLLECTION": "test", "RAG_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [RAG_BIN, "ingest", str(root), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_documents(process: subprocess.Popen[str], count: int) -> None:
    """Block until the job logged `count` finished documents (its INFO log goes to stderr)."""
    assert process.stderr is not None
    written = 0
    for line in process.stderr:
        written += "rag.ingest: wrote" in line
        if written >= count:
            return
    raise AssertionError(f"ingestion ended after {written} documents")


def test_kill_and_rerun_equals_clean_run(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_big_corpus(root)
    clean_data, crash_data = tmp_path / "clean", tmp_path / "crash"
    clean = start(root, clean_data)
    assert clean.wait(timeout=600) == 0, clean.stderr.read() if clean.stderr else ""
    expected = snapshot(Settings(data_dir=clean_data, collection="test"))
    assert len(expected["docs"]) == 24

    partial_seen = False
    for documents, delay in ((1, 0.0), (3, 0.05), (2, 0.3)):
        process = start(root, crash_data)
        wait_for_documents(process, documents)  # counts this run's documents, after the earlier ones
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        state = snapshot(Settings(data_dir=crash_data, collection="test"))
        partial_seen |= 0 < len(state["docs"]) < 24 or state["total"] != len(state["chunks"])
    assert partial_seen, "no kill landed mid-ingestion; the test proved nothing"

    final = start(root, crash_data)
    assert final.wait(timeout=600) == 0
    assert snapshot(Settings(data_dir=crash_data, collection="test")) == expected
