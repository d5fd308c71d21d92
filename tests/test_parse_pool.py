"""Parsing in worker processes (RAG_INGEST_WORKERS): the same collection as the parser thread gives, and a worker
that dies costs only the file that killed it."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import ingest.parse_pool
from ingest.job import IngestJob, IngestSummary
from rag.collection import Collection
from rag.config import Settings
from rag.store import open_store
from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus
from tests.test_ocr import write_manual


def _folder(root: Path) -> Path:
    make_corpus(root)
    write_manual(root / "manual.pdf")  # two of its pages are read by OCR, in a worker
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (root / "long.txt").write_text(
        "\n\n".join(f"Paragraph {i} about herons and reeds." * 5 for i in range(300))
    )
    return root


def _ingest(settings: Settings, root: Path, job_started: threading.Event | None = None) -> IngestSummary:
    with Collection(settings, create=True) as collection:
        job = IngestJob(collection)
        if job_started is not None:
            _jobs.append(job)
            job_started.set()
        return job.run(root, progress=False)


_jobs: list[IngestJob] = []


def _state(settings: Settings) -> dict[str, Any]:
    store = open_store(settings)
    try:
        records = store.document_records()
        return {
            r.source: sorted((c["chunk_index"], c["text"]) for c in store.chunks_of(r.doc_id))
            for r in records
        } | {"vectors": {r.source: store.chunk_vectors(r.doc_id) for r in records}}
    finally:
        store.close()


def _same_vectors(a: dict[str, dict[str, list[float]]], b: dict[str, dict[str, list[float]]]) -> bool:
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys()
        and all(max(abs(x - y) for x, y in zip(a[s][i], b[s][i], strict=True)) < 1e-4 for i in a[s])
        for s in a
    )


def test_workers_give_the_collection_the_thread_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest.parse_pool, "STREAM_HERE_BYTES", 1000)  # long.txt is parsed in this process
    root = _folder(tmp_path / "corpus")
    thread = Settings(data_dir=tmp_path / "thread", collection="c")
    pool = Settings(data_dir=tmp_path / "pool", collection="c", ingest_workers=2)
    by_thread, by_pool = _ingest(thread, root), _ingest(pool, root)
    assert (by_pool.added, by_pool.chunks, by_pool.failed) == (
        by_thread.added,
        by_thread.chunks,
        by_thread.failed,
    )
    assert [source for source, _ in by_pool.failed] == ["broken.pdf"]
    a, b = _state(thread), _state(pool)
    assert _same_vectors(a.pop("vectors"), b.pop("vectors"))
    assert a == b and "manual.pdf" in b and "long.txt" in b
    assert any(
        "Orca pump filter" in text for _, text in b["manual.pdf"]
    )  # the OCR'd page, parsed by a worker
    assert _ingest(pool, root).changed is False  # an unchanged rerun parses nothing
    # As people run it: the workers spawned from the `rag` script (long.txt now goes to a worker too)
    data = tmp_path / "cli"
    done = subprocess.run(
        [RAG_BIN, "ingest", str(root), "--workers", "2", "--collection", "c", "--json"],
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1 and json.loads(done.stdout)["added"] == by_thread.added, done.stderr
    by_cli = _state(Settings(data_dir=data, collection="c"))
    assert _same_vectors(by_cli.pop("vectors"), _state(thread)["vectors"]) and by_cli == a


def test_a_worker_killed_twice_on_one_file_fails_that_file_only(tmp_path: Path) -> None:
    """The OCR of manual.pdf is killed, then killed again when it is parsed alone: it fails in one line, the other
    files are ingested, and the next run takes it up again."""
    root = _folder(tmp_path / "corpus")
    settings = Settings(data_dir=tmp_path / "data", collection="c", ingest_workers=1)
    started, done = threading.Event(), threading.Event()
    kills: list[int] = []
    killer = threading.Thread(
        target=_kill_workers_reading, args=("manual.pdf", started, done, kills), daemon=True
    )
    killer.start()
    try:
        summary = _ingest(settings, root, started)
    finally:
        done.set()
        killer.join(timeout=10)
    assert len(kills) >= 2
    assert summary.failed == [
        ("broken.pdf", summary.failed[0][1]),
        ("manual.pdf", "its parser process died (a crash in a native parser, or out of memory)"),
    ]
    assert summary.added == len(_state(settings)) - 1 >= 8
    again = _ingest(settings, root)
    assert again.added == 1 and [s for s, _ in again.failed] == ["broken.pdf"]


def _kill_workers_reading(
    source: str, started: threading.Event, done: threading.Event, kills: list[int]
) -> None:
    """Whenever the job's progress says a worker is reading `source` by OCR, kill every worker process."""
    started.wait(60)
    job = _jobs[-1]
    while not done.is_set():
        if source in job.progress.current and "OCR" in job.progress.current:
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
                kills.append(child.pid or 0)
            job.progress.current = ""
        time.sleep(0.05)
