"""Parsing and chunking in worker processes beside the embedder (`RAG_INGEST_WORKERS`).

The plain run parses in one thread of the embedding process: the parser shares the GIL with the writer, and a folder
of scans is read by OCR one page at a time. Here each file is parsed whole in a pool of processes, several files at
once, a bounded number ahead of the embedder, and the parts come back in the planned order, so the writer (and so
the point ids, the records and the crash safety) sees exactly what the thread would have given it. A large text file
(a streamed format over STREAM_HERE_BYTES) is still parsed in this process, in parts, so it is never held whole.

A worker that dies (a native parser's crash, the kernel's OOM killer) takes the files in flight with it: each of
them is parsed again alone in a fresh pool, and the one that kills that one too fails with a one-line reason, while
the rest go on.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ingest.formats import STREAMED
from ingest.parsing import DocParser, _Doc, _Failed, _Part
from ingest.progress import IngestProgress
from rag.config import Settings

STREAM_HERE_BYTES = 8 * 1024 * 1024
AHEAD_PER_WORKER = 2  # files parsed ahead of the writer per worker: the queue that keeps the embedder fed
WAIT_S = 0.2  # how often a wait looks at cancelling and at OCR progress

Item = _Part | _Failed


def parsed_in_processes(
    here: DocParser, backend: str | None, work: list[_Doc], workers: int, progress: IngestProgress
) -> Iterator[Item]:
    """Each document's parts (or its failure), in work's order, parsed by `workers` processes (large text files
    by `here`, this process's parser, whose settings and cancel event the workers share)."""
    pending = deque(work)
    while pending and not here.cancel.is_set():
        with _Pool(here, backend, workers) as pool:
            try:
                yield from pool.parse(pending, progress)
            except BrokenProcessPool:
                yield from _alone(here, backend, pool.in_flight, progress)


def _alone(
    here: DocParser, backend: str | None, docs: list[_Doc], progress: IngestProgress
) -> Iterator[Item]:
    """The files a dead worker had in flight, each in a pool of its own: the one that kills it again fails."""
    for doc in docs:
        if here.cancel.is_set():
            return
        with _Pool(here, backend, 1) as pool:
            try:
                yield from pool.parse(deque([doc]), progress)
            except BrokenProcessPool:
                yield _Failed(doc, "its parser process died (a crash in a native parser, or out of memory)")


def _streamed_here(doc: _Doc) -> bool:
    return doc.found.path.suffix.lower() in STREAMED and doc.found.size > STREAM_HERE_BYTES


class _Pool:
    """A process pool whose workers each hold a DocParser, relaying OCR progress and cancelling to them."""

    def __init__(self, here: DocParser, backend: str | None, workers: int) -> None:
        # Spawned, not forked: the ingesting process runs ONNX Runtime's (or torch's) threads
        context = multiprocessing.get_context("spawn")
        self.here = here
        self.pages: Any = context.Queue()
        self.stop = context.Event()
        self.workers = workers
        self.executor = ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start,
            initargs=(here.settings, backend, self.pages, self.stop),
        )
        self.in_flight: list[_Doc] = []  # submitted, not yet given out

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # a long OCR in a worker stops at its next page
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.pages.close()

    def parse(self, pending: deque[_Doc], progress: IngestProgress) -> Iterator[Item]:
        """Parse from the front of pending, taking each document off it as it goes; out in pending's order."""
        futures: deque[Future[list[Item]]] = deque()
        while pending or futures:
            while (
                pending and not _streamed_here(pending[0]) and len(futures) < self.workers * AHEAD_PER_WORKER
            ):
                self.in_flight.append(pending.popleft())
                futures.append(self.executor.submit(_parse, self.in_flight[-1]))
            if not futures:  # a large text file is next: parsed here, in parts, once those before it are out
                yield from self.here.parts(pending.popleft(), progress)
                continue
            items = self._wait(futures[0], progress)
            if items is None:
                return
            futures.popleft()
            self.in_flight.pop(0)
            yield from items

    def _wait(self, future: Future[list[Item]], progress: IngestProgress) -> list[Item] | None:
        """The future's items, relaying OCR pages meanwhile; None once cancelled."""
        while True:
            self._relay(progress)
            if self.here.cancel.is_set():
                return None
            try:
                return future.result(timeout=WAIT_S)
            except TimeoutError:
                continue

    def _relay(self, progress: IngestProgress) -> None:
        while True:
            try:
                source, page, pages = self.pages.get_nowait()
            except queue.Empty:
                return
            progress.ocr_page(source, page, pages)


class _PageRelay(IngestProgress):
    """A worker's progress: the OCR pages go to the parent, which shows them; nothing else is shown here."""

    def __init__(self, pages: Any) -> None:
        super().__init__(False)
        self.pages = pages

    def ocr_page(self, source: str, page: int, pages: int) -> None:
        self.pages.put((source, page, pages))


_worker: tuple[DocParser, _PageRelay] | None = None


def _start(settings: Settings, backend: str | None, pages: Any, stop: Any) -> None:
    """A worker's start: its parser (the tokenizer loads at the first file) and its line to the parent."""
    from rag.embedder import LazyEmbedder

    # Ctrl+C is the parent's to handle: it stops the run in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _worker
    _worker = DocParser(settings, LazyEmbedder(settings, backend), stop), _PageRelay(pages)


def _parse(doc: _Doc) -> list[Item]:
    assert _worker is not None, "the pool's initializer did not run"
    parser, relay = _worker
    return list(parser.parts(doc, relay))
