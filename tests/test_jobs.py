"""Ingestion as a background job (service/jobs.py) and folders that stay in sync (service/watch.py), on the real
embedder and store: a cancelled job leaves a consistent collection, jobs of one collection wait their turn, and
`rag serve --watch` reflects an added, a changed and a deleted file through the documents route."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.config import Settings
from rag.errors import JobNotFound
from service import RagService
from service.jobs import JobState
from tests.conftest import RAG_BIN, cli_env, launched

ANIMALS = ["alpacas", "llamas", "vicunas", "guanacos", "camels", "capybaras", "quokkas", "wombats"]


def _many_files(folder: Path, count: int) -> None:
    """count documents of several chunks each, so the job runs long enough to be cancelled in the middle."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        animal = ANIMALS[i % len(ANIMALS)]
        sections = [
            f"## Part {j}\n\n"
            + " ".join(f"Fact {i}.{j}.{k}: {animal} number {i} likes item {k}." for k in range(30))
            for j in range(3)
        ]
        (folder / f"note-{i:03d}.md").write_text(f"# Note {i} on {animal}\n\n" + "\n\n".join(sections))


def _wait(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def _consistent(service: RagService, collection: str) -> dict[str, int]:
    """Every record complete and matching its chunks, every chunk belonging to a record: the documents each."""
    store = service.collection(collection).store
    records = store.document_records()
    assert all(not r.incomplete for r in records), [r.source for r in records if r.incomplete]
    chunks = {r.doc_id: len(store.chunks_of(r.doc_id)) for r in records}  # type: ignore[attr-defined]
    assert chunks == {r.doc_id: r.chunks for r in records}
    assert store.count_chunks() == sum(chunks.values())  # no chunk without its record
    return {r.source: r.chunks for r in records}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RagService]:
    opened = RagService(Settings(data_dir=tmp_path / "data", collection="test"))
    yield opened
    opened.close()


def _long_document(path: Path, version: str) -> None:
    """Over 300 chunks: written in parts of 256 (ingest.parsing.PART_CHUNKS), its old version deleted at the first."""
    sections = [
        f"## Section {j}\n\n"
        + " ".join(f"{version} fact {j}.{k} about the harbour crane." for k in range(12))
        for j in range(330)
    ]
    path.write_text("# Harbour manual\n\n" + "\n\n".join(sections))


def test_a_job_cancelled_mid_document_finishes_that_document_and_leaves_the_rest_for_a_rerun(
    service: RagService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while an updated long document was half written (its old version already deleted), the job
    dropped the new half too, and the document was gone from the collection until the next run."""
    _cancel_mid_document(service, monkeypatch)


def test_the_same_with_files_parsed_in_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RagService(Settings(data_dir=tmp_path / "data", collection="test", ingest_workers=2))
    try:
        _cancel_mid_document(service, monkeypatch)
    finally:
        service.close()


def _cancel_mid_document(service: RagService, monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = service.uploads_dir("test")
    uploads.mkdir(parents=True)
    _long_document(uploads / "manual.md", "Old")
    first = service.ingest_uploads_now("test")
    assert first.added == 1 and first.chunks > 256
    _long_document(uploads / "manual.md", "New")
    _many_files(uploads, 20)
    embedder = service.collection("test").embedder
    embed = embedder.embed

    def embed_then_cancel(*args: Any, **kwargs: Any) -> Any:
        vectors = embed(*args, **kwargs)
        for job in service.jobs.jobs("test"):  # a person presses Cancel while the first part is embedded
            job.cancel_event.set()
        return vectors

    monkeypatch.setattr(embedder, "embed", embed_then_cancel)
    job = service.ingest_uploads("test")
    assert job.done.wait(120), "the cancelled job did not stop"
    monkeypatch.undo()
    assert job.state is JobState.CANCELLED and job.summary is not None
    assert (job.summary.updated, job.summary.added, job.summary.not_started) == (1, 0, 20)
    assert "cancelled: 20 files not ingested" in job.summary.render()
    kept = _consistent(service, "test")
    assert list(kept) == ["manual.md"] and kept["manual.md"] > 256
    chunks = service.collection("test").store.chunks_of(_doc_id(service, "manual.md"))  # type: ignore[attr-defined]
    assert all("Old fact" not in c["text"] for c in chunks) and any("New fact" in c["text"] for c in chunks)

    rest = service.ingest_uploads_now("test")
    assert rest.added == 20 and rest.unchanged == 1 and not rest.failed
    assert len(_consistent(service, "test")) == 21


def _doc_id(service: RagService, source: str) -> str:
    return next(r.doc_id for r in service.documents("test") if r.source == source)


def test_jobs_of_one_collection_wait_their_turn_and_a_waiting_one_can_be_cancelled(
    service: RagService, tmp_path: Path
) -> None:
    _many_files(service.uploads_dir("test"), 12)
    other = tmp_path / "other"
    _many_files(other, 2)
    first = service.ingest_uploads("test")
    second = service.jobs.submit("test", other, "upload")
    again = service.jobs.submit("test", other, "upload")
    assert again is second  # the same folder waiting already: one job, which will see the newest files
    assert second.status()["state"] == "queued"
    third = service.jobs.submit("test", tmp_path / "missing", "upload")
    service.jobs.cancel(third.id, "test")
    assert third.state is JobState.CANCELLED and third.done.is_set()
    while not second.done.is_set():  # never both at once
        assert not (second.state is JobState.RUNNING and not first.done.is_set())
        time.sleep(0.01)
    assert first.state is JobState.DONE and second.state is JobState.DONE
    assert first.summary is not None and first.summary.added == 12
    assert [j.id for j in service.jobs.jobs("test")] == [third.id, second.id, first.id]
    with pytest.raises(JobNotFound):
        service.jobs.get(first.id, "another-collection")


def test_a_job_whose_folder_is_gone_fails_with_the_reason(service: RagService, tmp_path: Path) -> None:
    job = service.jobs.submit("test", tmp_path / "nowhere", "watch")
    assert job.done.wait(60)
    assert job.state is JobState.FAILED and "is not a folder" in (job.error or "")


# ---------------------------------------------------------------------------------------------- rag serve --watch


@pytest.mark.slow
def test_serve_watch_reflects_added_changed_and_deleted_files_and_uploads_are_jobs(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "alpacas.md").write_text("# Alpacas\n\nAlpacas eat grass and hay.\n")
    data = tmp_path / "data"
    data.mkdir()
    env = cli_env(data) | {"RAG_COLLECTION": "test", "RAG_WATCH": f'["{watched}"]'}
    with (
        launched("serve", data, env, timeout_s=120) as (port, _),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):

        def sources() -> dict[str, int]:
            listed = http.get("/v1/collections/test/documents")
            return (
                {d["source"]: d["chunks"] for d in listed.json()["data"]} if listed.status_code == 200 else {}
            )

        _wait(lambda: "alpacas.md" in sources(), 90, "the watched folder ingested at start")
        (watched / "llamas.md").write_text("# Llamas\n\nLlamas carry loads on mountain trails.\n")
        _wait(lambda: "llamas.md" in sources(), 20, "an added file")
        (watched / "alpacas.md").write_text(
            "# Alpacas\n\nAlpacas eat grass and hay.\n\n## Wool\n\n"
            + "Alpaca fleece is soft and warm. " * 120
        )
        _wait(lambda: sources().get("alpacas.md", 0) > 1, 20, "a changed file")
        (watched / "llamas.md").unlink()
        _wait(lambda: "llamas.md" not in sources(), 20, "a deleted file")
        half = watched / "partial.pdf"
        half.write_bytes(b"%PDF-1.4\n1 0 obj <<")  # a PDF still being written: fails, is kept, is retried
        jobs = _wait(lambda: _failed_watch_jobs(http), 20, "the half-written PDF's job")
        assert "partial.pdf" in jobs[0]["errors"][0]["source"]

        uploaded = http.post(
            "/v1/collections/test/documents",
            files=[("files", ("capybaras.md", b"# Capybaras\n\nCapybaras are the largest rodents.\n"))],
        )
        assert uploaded.status_code == 202, uploaded.text
        job = uploaded.json()["job"]
        assert job["origin"] == "upload" and job["state"] in ("queued", "running", "done")
        status = _wait(
            lambda: (s := http.get(f"/v1/collections/test/jobs/{job['id']}").json())["state"] == "done" and s,
            60,
            "the upload job",
        )
        assert status["summary"]["added"] == 1 and status["files_done"] == status["files_total"] == 1
        assert "capybaras.md" in sources()
        waited = http.post(
            "/v1/collections/test/documents?wait=true",
            files=[("files", ("vicunas.md", b"# Vicunas\n\nVicunas have the finest wool.\n"))],
        )
        assert waited.status_code == 200 and waited.json()["ingest"]["added"] == 1, waited.text
        missing = http.get("/v1/collections/test/jobs/0123456789ab")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert http.post(f"/v1/collections/other/jobs/{job['id']}/cancel").status_code == 404
    assert (watched / "partial.pdf").exists()  # never deleted for failing


def _failed_watch_jobs(http: httpx.Client) -> list[dict[str, Any]]:
    listed = http.get("/v1/collections/test/jobs").json()["data"]
    return [j for j in listed if j["origin"] == "watch" and j["errors"]]


@pytest.mark.slow
def test_rag_ingest_watch_prints_each_change_and_stops_when_told(tmp_path: Path) -> None:
    """SIGTERM, as a service manager stops it: SIGINT is ignored by a process started in the background (CI's
    shell), so it cannot stand for Ctrl+C here; by hand, Ctrl+C exits 130."""
    import queue
    import signal
    import threading

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Quokkas\n\nQuokkas live on Rottnest Island.\n")
    stderr = (tmp_path / "stderr.log").open("w")
    process = subprocess.Popen(
        [RAG_BIN, "ingest", str(folder), "--watch", "--no-progress"],
        env=cli_env(tmp_path / "data") | {"RAG_LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()  # type: ignore[union-attr]

    def printed(start: str) -> bool:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            if seen[-1].startswith(start):
                return True
        return False

    def log() -> str:
        return "stdout:\n" + "".join(seen) + "stderr:\n" + (tmp_path / "stderr.log").read_text()

    try:
        assert printed("added 1, updated 0, unchanged 0"), log()
        (folder / "b.md").write_text("# Wombats\n\nWombats have cube-shaped droppings.\n")
        assert printed("added 1, updated 0, unchanged 1"), log()
        outside = tmp_path / "elsewhere" / "moved-in"
        outside.mkdir(parents=True)
        (outside / "c.md").write_text("# Numbats\n\nNumbats eat termites.\n")
        outside.rename(folder / "moved-in")  # one event, for the folder
        assert printed("added 1, updated 0, unchanged 2"), log()
        (folder / "a.md").unlink()
        assert printed("added 0, updated 0, unchanged 2, deleted 1"), log()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("SIGTERM did not stop it within 90 s\n" + log()) from None
        stderr.close()
    assert process.returncode == 143 and "Traceback" not in log(), log()
