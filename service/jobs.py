"""Ingestion as background jobs: each has an id, reports files, chunks, the current file and errors while it runs,
and can be cancelled. One job runs at a time per collection (the others wait in order); a folder already waiting
is not queued twice (the waiting job will see the newest files anyway)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ingest.job import IngestJob, IngestSummary
from rag.errors import JobNotFound, RagError

log = logging.getLogger("rag.jobs")

KEEP_FINISHED = 200  # finished jobs remembered for status calls; older ones are forgotten


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = (
        "failed"  # the job itself failed (the folder is gone, the store is unreachable); not one bad file
    )

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    """origin: what started it, `upload` or `watch`; folder: what it ingests (not shown: a server's own path)."""

    collection: str
    folder: Path
    origin: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: JobState = JobState.QUEUED
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    summary: IngestSummary | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    ingest: IngestJob | None = None  # while running: its live summary and progress
    done: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict[str, Any]:
        """What the API returns and the UI shows; counts are live while it runs."""
        summary = self.summary or (self.ingest.summary if self.ingest else None)
        progress = self.ingest.progress if self.ingest else None
        errors = [*summary.failed] if summary else []
        return {
            "id": self.id,
            "object": "ingestion.job",
            "collection": self.collection,
            "origin": self.origin,
            "state": self.state.value,
            "files_done": progress.files_done if progress else 0,
            "files_total": progress.files_total if progress else 0,
            "chunks_embedded": progress.embedded_count if progress else 0,
            "chunks_found": progress.found if progress else 0,
            "current_file": progress.current if progress and self.state is JobState.RUNNING else None,
            "errors": [{"source": s, "reason": r} for s, r in errors],
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "summary": self.summary.as_dict() if self.summary else None,
        }

    def progress_line(self) -> str:
        """One line for a person: state, files, chunks, the file being read."""
        status = self.status()
        if self.state is JobState.QUEUED:
            return "waiting for the ingestion before it to finish"
        line = f"{status['state']}: files {status['files_done']}/{status['files_total']}, "
        line += f"chunks {status['chunks_embedded']}/{status['chunks_found']} found so far"
        if status["current_file"]:
            line += f", at {status['current_file']}"
        if status["errors"]:
            line += f", {len(status['errors'])} failed"
        return line


Runner = Callable[[Job], IngestSummary]


class JobQueue:
    """Jobs run by `runner` on one worker thread per collection, started when work comes and ended when none is
    left. `on_finished` is told of each job that ends (the watcher retries a folder whose files failed)."""

    def __init__(self, runner: Runner, on_finished: Callable[[Job], None] | None = None) -> None:
        self._runner = runner
        self._on_finished = on_finished
        self._lock = threading.Lock()  # never held while on_finished runs: it may submit
        self._jobs: dict[str, Job] = {}
        self._waiting: dict[str, deque[Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False

    def submit(self, collection: str, folder: Path, origin: str) -> Job:
        with self._lock:
            if self._closed:
                raise RagError("the server is stopping; no new ingestion starts")
            waiting = self._waiting.setdefault(collection, deque())
            for job in waiting:
                if job.folder == folder:
                    return job  # it has not started: it will find this change too
            job = Job(collection, folder, origin)
            self._jobs[job.id] = job
            waiting.append(job)
            if collection not in self._workers:
                worker = threading.Thread(
                    target=self._work, args=(collection,), name=f"ingest-{collection}", daemon=True
                )
                self._workers[collection] = worker
                worker.start()
            self._forget_old()
            return job

    def get(self, job_id: str, collection: str | None = None) -> Job:
        """The job; one of another collection is not found either (its id says nothing outside it)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or collection is not None and job.collection != collection:
            raise JobNotFound(
                f"no ingestion job {job_id!r} in this collection (finished jobs are kept for a while, not forever)"
            )
        return job

    def jobs(self, collection: str | None = None) -> list[Job]:
        """Newest first."""
        with self._lock:
            found = [j for j in self._jobs.values() if collection is None or j.collection == collection]
        return found[::-1]

    def cancel(self, job_id: str, collection: str | None = None) -> Job:
        """A waiting job never starts; a running one stops at its next file (what it finished stays)."""
        job = self.get(job_id, collection)
        with self._lock:
            waiting = self._waiting.get(job.collection, deque())
            never_started = job in waiting
            if never_started:
                waiting.remove(job)
        if never_started:
            self._finish(job, JobState.CANCELLED)
        else:
            job.cancel_event.set()
        return job

    def close(self) -> None:
        """Cancel everything (a server stopping) and wait for the running jobs to reach a file boundary: the
        stores they write must not be closed under them."""
        with self._lock:
            self._closed = True
            dropped = [job for waiting in self._waiting.values() for job in waiting]
            for waiting in self._waiting.values():
                waiting.clear()
            running = [j for j in self._jobs.values() if j.state is JobState.RUNNING]
            workers = list(self._workers.values())
        for job in dropped:
            self._finish(job, JobState.CANCELLED)
        for job in running:
            log.warning("stopping ingestion job %s of %r at its next file", job.id, job.collection)
            job.cancel_event.set()
        for worker in workers:
            worker.join()

    def _work(self, collection: str) -> None:
        while True:
            with self._lock:
                waiting = self._waiting.get(collection)
                if not waiting:
                    del self._workers[collection]
                    return
                job = waiting.popleft()
                job.state, job.started_at = JobState.RUNNING, _now()
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            summary = self._runner(job)
        except RagError as exc:
            log.warning("ingestion job %s of %r failed: %s", job.id, job.collection, exc)
            self._finish(job, JobState.FAILED, error=str(exc))
        except Exception as exc:  # the worker thread must outlive a bug in one job, and say what it was
            log.exception("ingestion job %s failed", job.id)
            self._finish(job, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            job.summary = summary
            self._finish(job, JobState.CANCELLED if summary.cancelled else JobState.DONE)

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, _now()
        job.done.set()
        if self._on_finished is not None:
            try:
                self._on_finished(job)
            except Exception:
                log.exception("after ingestion job %s", job.id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state.finished]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
