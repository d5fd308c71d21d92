"""`rag ingest`: scan a folder, skip unchanged files, embed the rest, replace or delete their chunks.

A document is a file's content at one absolute path (ingest/known.py): a file recorded from a parent or subfolder
ingest is the same document, a new file whose content is a document whose file is gone is that document moved,
and one whose content a live document holds already is a copy, reported and skipped.

Crash safety: a document is written as delete-old-points, upsert-chunks, upsert-record, in that order, and point ids
are deterministic. The record is what marks a document done, so a run killed at any moment leaves either the old
state or a document without a record, which the next run redoes from scratch. A move sets the chunks' path, then the
record's: killed between, the record still names the gone file, so the next run finds the same move again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.chunking import Chunk
from ingest.formats import STREAMED, file_type, loader_for
from ingest.known import KnownDocuments, display_path, file_hash
from ingest.ocr import IMAGE_SUFFIXES
from ingest.parsing import DocParser, _Doc, _Failed, _Part
from ingest.progress import IngestProgress
from ingest.scan import FoundFile, os_error_reason, scan
from rag.collection import Collection
from rag.config import Settings
from rag.errors import RagError
from rag.rerank import retrain_advice
from rag.sparse import bm25_document
from rag.store import PointData
from rag.store.base import chunk_id
from rag.store.payload import ChunkPayload, DocumentRecord
from rag.text import matches_glob, printable

log = logging.getLogger("rag.ingest")

# Chunks embedded together, sorted by length across the group so batches pad little. Groups of 16 batches ran
# within this VM's noise of groups of 4 (docs/benchmarks.md, "Ingestion speed"), and smaller groups finish files sooner.
EMBED_GROUP_BATCHES = 4


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    # found at a new path with the content of a document whose file is gone: not embedded again
    moved: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0  # without load_seconds, so chunks_per_s stays a throughput
    embed_seconds: float = 0.0
    load_seconds: float = 0.0
    advice: str | None = None  # e.g. retraining the collection's reranker is due
    # stopped on request: the files finished stay, the rest (no record) are ingested by the next run
    cancelled: bool = False
    not_started: int = 0  # files left for the next run when cancelled

    @property
    def changed(self) -> bool:
        """Whether the collection changed: a document added, updated, moved or deleted."""
        return bool(self.added or self.updated or self.deleted or self.moved)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "chunks_written": self.chunks,
            "seconds": round(self.seconds, 2),
            "load_seconds": round(self.load_seconds, 2),
            "chunks_per_s": round(self.chunks_per_s, 1),
            "skipped_files": [{"source": s, "reason": r} for s, r in self.skipped],
            "failed_files": [{"source": s, "reason": r} for s, r in self.failed],
            "advice": self.advice,
            "cancelled": self.cancelled,
            "not_ingested": self.not_started,
        }

    def render(self) -> str:
        written = f"chunks written {self.chunks} in {self.seconds:.1f} s ({self.chunks_per_s:.1f} chunks/s)"
        if self.load_seconds >= 0.05:
            written += f", after {self.load_seconds:.1f} s loading the embedder"
        moved = (
            f", moved {self.moved}" if self.moved else ""
        )  # a line scripts read: unchanged unless it happened
        lines = [
            f"added {self.added}, updated {self.updated}{moved}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, skipped {len(self.skipped)}, failed {len(self.failed)}",
            written,
        ]
        if self.cancelled:
            lines.append(
                f"cancelled: {_files(self.not_started)} not ingested; the next ingestion of this folder does them"
            )
        elif not self.changed:
            lines.append("nothing changed: no file was embedded")
        unsupported = Counter(r for _, r in self.skipped if r.startswith("unsupported"))
        lines += [f"  skipped {_files(n)}: {reason}" for reason, n in sorted(unsupported.items())]
        lines += [
            f"  skipped {printable(s)}: {r}" for s, r in self.skipped if not r.startswith("unsupported")
        ]
        lines += [f"  FAILED  {printable(s)}: {r}" for s, r in self.failed]
        if self.advice:
            lines.append(f"note: {self.advice}")
        return "\n".join(lines)


def _files(count: int) -> str:
    return "1 file" if count == 1 else f"{count} files"


@dataclass
class _Move:
    found: FoundFile
    root: str
    record: DocumentRecord  # the document whose file is gone, now at found.path


class IngestJob:
    """One ingestion of a folder into a collection; the embedder loads only once some file must be embedded.

    cancel: set from another thread, the run stops at the next file boundary: a file whose writing has begun is
    finished (its old version is already gone: dropping the new one would lose the document), the files written
    stay, and the files not begun are left for the next run. summary and progress are readable while it runs (a
    background job's status)."""

    def __init__(self, collection: Collection, cancel: threading.Event | None = None) -> None:
        self.collection = collection
        self.cancel = cancel or threading.Event()
        self.summary = IngestSummary()
        self.progress = IngestProgress(False)
        self.settings = collection.settings
        self.store = collection.store
        self.embedder = collection.embedder
        self.parser = DocParser(self.settings, self.embedder, self.cancel)
        self.ocr = self.parser.ocr

    def run(
        self, root: Path, progress: bool | None = None, on_file: Callable[[int, int], None] | None = None
    ) -> IngestSummary:
        started = time.perf_counter()
        root = _check_folder(root)
        self.progress = shown = IngestProgress(progress, on_file)
        shown.note(f"scanning {root}…")
        self.summary = summary = IngestSummary()
        # An excluded file that was ingested before is deleted like a removed one.
        found = [f for f in scan(root) if not matches_glob(f.source, self.settings.ingest_exclude)]
        work = self._reconcile(str(root), found, summary)
        shown.note(self._plan_line(work, summary))
        self._process(work, summary, shown)
        # Optimizing an untouched shard costs time and changes nothing.
        if work or summary.deleted or summary.moved:
            self.store.finish()
        summary.seconds = time.perf_counter() - started - summary.load_seconds
        if summary.added or summary.updated or summary.deleted:
            current = self.store.document_records()
            summary.advice = retrain_advice(self.settings, self.collection.name, current)
        return summary

    def _too_big(self, size: int) -> str:
        return (
            f"{size / 2**20:.1f} MB, over RAG_MAX_FILE_MB={self.settings.max_file_mb:g} "
            "(only text formats are read in pieces)"
        )

    def _plan_line(self, work: list[_Doc], summary: IngestSummary) -> str:
        line = f"{len(work)} files to ingest ({summary.unchanged} unchanged)"
        if work and not self.embedder.loaded:
            line += "; loading the embedder…"
        return line

    def _reconcile(self, root: str, found: list[FoundFile], summary: IngestSummary) -> list[_Doc]:
        """Move, delete and mark unchanged what needs no embedding; the documents left to write."""
        known = KnownDocuments(self.store.document_records())
        stale = known.stale_under(root, found)
        known.leaving.update(r.doc_id for r in stale)  # not a copy's original: it goes in this run
        work, moves = self._plan(root, found, known, summary)
        for move in moves:
            self._move(move, summary)
        for record in stale:
            if record.doc_id not in known.claimed:
                self.store.delete_document(record.doc_id)
                summary.deleted += 1
        return work

    def _plan(
        self, root: str, found: list[FoundFile], known: KnownDocuments, summary: IngestSummary
    ) -> tuple[list[_Doc], list[_Move]]:
        """Recorded files first, so a new file is never taken for a copy of content a changed one no longer has."""
        readable = [f for f in found if self._readable(f, summary)]
        recorded = [(f, r) for f in readable if (r := known.at(str(f.path))) is not None]
        work = [d for f, r in recorded if (d := self._plan_recorded(f, r, known, summary))]
        moves: list[_Move] = []
        for f in readable:
            if known.at(str(f.path)) is None:
                item = self._plan_new(root, f, known, summary)
                if isinstance(item, _Move):
                    moves.append(item)
                elif item is not None:
                    work.append(item)
        return work, moves

    def _readable(self, f: FoundFile, summary: IngestSummary) -> bool:
        """A file some loader can read within the size limit; otherwise reported, and its record (if any) kept."""
        if f.error:
            summary.failed.append((f.source, f.error))
        elif loader_for(f.path) is None:
            summary.skipped.append((f.source, f"unsupported file type {f.path.suffix or '(none)'}"))
        elif not self.ocr.enabled and f.path.suffix.lower() in IMAGE_SUFFIXES:
            summary.skipped.append((f.source, "an image, and OCR is off (RAG_OCR=false)"))
        elif f.size == 0:
            summary.skipped.append((f.source, "empty file"))
        elif f.size > self.settings.max_file_mb * 1024 * 1024 and f.path.suffix.lower() not in STREAMED:
            summary.failed.append((f.source, self._too_big(f.size)))
        else:
            return True
        return False

    def _hash(self, f: FoundFile, summary: IngestSummary) -> str | None:
        try:
            return file_hash(f.path)
        except OSError as exc:
            summary.failed.append((f.source, os_error_reason(exc)))
            return None

    def _plan_recorded(
        self, f: FoundFile, record: DocumentRecord, known: KnownDocuments, summary: IngestSummary
    ) -> _Doc | None:
        """A file with a record at its path, whichever folder that record was ingested from: it keeps its id."""
        if record.size == f.size and record.mtime_ns == f.mtime_ns:
            summary.unchanged += 1
            return None
        if (digest := self._hash(f, summary)) is None:
            return None
        known.hold(digest, file_type(f.path), str(f.path))
        if record.content_hash == digest:
            self.store.set_payload(record.doc_id, {"size": f.size, "mtime_ns": f.mtime_ns})
            summary.unchanged += 1
            return None
        return _Doc(f, record.root, record.source, record.doc_id, digest, is_update=True)

    def _plan_new(
        self, root: str, f: FoundFile, known: KnownDocuments, summary: IngestSummary
    ) -> _Doc | _Move | None:
        """A file no record names: a copy of a live document (skipped, so no passage shows up twice), a document
        whose file is gone (moved), or a new one."""
        if (digest := self._hash(f, summary)) is None:
            return None
        kind = file_type(f.path)
        if (holder := known.holder(digest, kind)) is not None:
            summary.skipped.append((f.source, f"same content as {display_path(holder, root)}"))
            return None
        known.hold(digest, kind, str(f.path))
        if (record := known.take_gone(digest, kind)) is not None:
            return _Move(f, root, record)
        return _Doc(f, root, f.source, known.new_id(root, f.source), digest, is_update=False)

    def _move(self, move: _Move, summary: IngestSummary) -> None:
        """The document's points stay as they are (same text, same vectors); only the path in their payload changes."""
        paths = path_fields(move.root, move.found.source)
        self.store.set_chunks_payload(move.record.doc_id, paths)
        self._record_move(move, paths)  # last: the record at its new path is what marks the move done
        summary.moved += 1
        log.info("moved %s to %s", move.record.path, move.found.path)

    def _record_move(self, move: _Move, paths: dict[str, Any]) -> None:
        found = move.found
        self.store.set_payload(move.record.doc_id, {**paths, "size": found.size, "mtime_ns": found.mtime_ns})

    def _process(self, work: list[_Doc], summary: IngestSummary, progress: IngestProgress) -> None:
        if not work:
            return
        if self.cancel.is_set():  # cancelled while the folder was scanned: not even the embedder loads
            summary.cancelled, summary.not_started = True, len(work)
            return
        # Loaded here, before the parser thread needs its tokenizer, so a load error stops the run instead of
        # failing every file.
        loading = time.perf_counter()
        self.collection.ensure_created()  # asks the embedder for its dimension: it loads now
        summary.load_seconds = time.perf_counter() - loading
        writer = _Writer(self, summary, progress)
        progress.start(len(work))
        try:
            self._feed(work, writer, progress)
            progress.files_finished(writer.flush())
            if self.cancel.is_set():
                summary.cancelled = True
                summary.not_started = len(work) - progress.files_done
        finally:
            progress.close()

    def _feed(self, work: list[_Doc], writer: _Writer, progress: IngestProgress) -> None:
        """Parse in a thread beside the embedder; each part to the writer, which embeds and writes in batches."""
        items: queue.Queue[_Part | _Failed | None] = queue.Queue(maxsize=32)
        stop = threading.Event()
        producer = threading.Thread(target=self._produce, args=(work, items, stop, progress), daemon=True)
        producer.start()
        try:
            while (item := self._next(items, writer)) is not None:
                writer.take(item)
                progress.files_finished(writer.flush_if_full())
        finally:
            stop.set()  # a failed write must not leave the parser thread blocked on a full queue

    def _next(self, items: queue.Queue[_Part | _Failed | None], writer: _Writer) -> _Part | _Failed | None:
        """The parser's next item; None at the end. Once cancelled, only the rest of the files whose writing has
        begun (the parser yields a file's parts in a row), then None, without waiting for a long parse."""
        while not (self.cancel.is_set() and not writer.open):
            try:
                item = items.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                return None
            if not self.cancel.is_set() or item.doc.doc_id in writer.open:
                return item
        return None

    def _produce(
        self,
        work: list[_Doc],
        items: queue.Queue[_Part | _Failed | None],
        stop: threading.Event,
        progress: IngestProgress,
    ) -> None:
        try:
            for item in self._parsed(work, progress):
                if isinstance(item, _Part):
                    progress.chunks_found(len(item.chunks))
                if not _put(items, item, stop):
                    return
        finally:
            _put(items, None, stop)

    def _parsed(self, work: list[_Doc], progress: IngestProgress) -> Iterator[_Part | _Failed]:
        """Every document's parts in work's order: from worker processes when the settings ask for them and there
        is more than one file, else from this thread."""
        workers = self.settings.ingest_workers
        if workers > 0 and len(work) > 1:
            from ingest.parse_pool import parsed_in_processes

            yield from parsed_in_processes(self.parser, self.embedder.backend, work, workers, progress)
            return
        for doc in work:
            if self.cancel.is_set():
                return
            yield from self.parser.parts(doc, progress)


def _put(
    items: queue.Queue[_Part | _Failed | None], item: _Part | _Failed | None, stop: threading.Event
) -> bool:
    """Put unless the consumer has stopped; False then."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


class _Writer:
    """Batches chunks across documents for the embedder, then writes each document in crash-safe order."""

    def __init__(self, job: IngestJob, summary: IngestSummary, progress: IngestProgress) -> None:
        self.job = job
        self.store = job.store
        self.summary = summary
        self.progress = progress
        self.pending: list[_Part | _Failed] = []
        self.pending_chunks: list[Chunk] = []
        self.started: dict[str, str] = {}  # doc_id -> when its first part was written, its ingested_at
        self.pages: dict[str, set[int]] = {}
        self.ocr_pages: dict[str, set[int]] = {}  # page numbers read by OCR (0: an image file's one page)
        self.open: set[str] = set()  # documents of which some parts were taken and the last one not yet
        self.pending_vectors: list[Any] = []  # vectors that came with their parts (embedded by Ray workers)

    def take(self, item: _Part | _Failed, vectors: Any = None) -> None:
        """vectors: the part's, when it was embedded elsewhere; then the writer embeds nothing."""
        if vectors is not None:
            self.pending_vectors.extend(vectors)
        self.progress.working_on(printable(item.doc.found.source))
        if isinstance(item, _Part) and not item.final:
            self.open.add(item.doc.doc_id)
        else:
            self.open.discard(item.doc.doc_id)
        self.pending.append(item)
        if isinstance(item, _Part):
            self.pending_chunks.extend(item.chunks)
            self.pages.setdefault(item.doc.doc_id, set()).update(c.page for c in item.chunks if c.page)
            self.ocr_pages.setdefault(item.doc.doc_id, set()).update(
                c.page or 0 for c in item.chunks if c.ocr
            )

    def flush_if_full(self) -> int:
        if len(self.pending_chunks) >= self.job.settings.embed_batch_size * EMBED_GROUP_BATCHES:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Embed pending chunks (sorted by length across the group) and write them; returns files finished."""
        started = time.perf_counter()
        if self.pending_vectors:
            vectors: Any = self.pending_vectors
            assert len(vectors) == len(self.pending_chunks), "every part came with its vectors, or none did"
        else:
            texts = [c.embed_text() for c in self.pending_chunks]
            vectors = self.job.embedder.embed(texts, on_batch=self.progress.embedded)
        self.summary.embed_seconds += time.perf_counter() - started
        finished = 0
        cursor = 0
        for item in self.pending:
            if isinstance(item, _Failed):
                self._fail(item)
                finished += 1
                continue
            part_vectors = vectors[cursor : cursor + len(item.chunks)]
            cursor += len(item.chunks)
            self._write(item, part_vectors)
            finished += int(item.final)
        self.pending, self.pending_chunks, self.pending_vectors = [], [], []
        return finished

    def _fail(self, item: _Failed) -> None:
        doc = item.doc
        if (
            doc.doc_id in self.started or item.skipped and doc.is_update
        ):  # a streamed file broke mid-way: drop its partial new version
            self.store.delete_document(doc.doc_id)
        (self.summary.skipped if item.skipped else self.summary.failed).append(
            (doc.found.source, item.reason)
        )

    def _write(self, part: _Part, vectors: Any) -> None:
        doc = part.doc
        base_needed = doc.doc_id not in self.started
        if base_needed:
            self.store.delete_document(doc.doc_id)
            self.started[doc.doc_id] = datetime.now(UTC).isoformat(timespec="seconds")
        base = self._base_payload(doc)
        if base_needed:
            self._write_provisional_record(doc, base)
        points = []
        for i, (chunk, vector) in enumerate(zip(part.chunks, vectors, strict=True)):
            payload = ChunkPayload(
                **base,
                chunk_index=part.first_index + i,
                text=chunk.text,
                title=chunk.title,
                page=chunk.page,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                ocr=chunk.ocr,
            )
            points.append(
                PointData(
                    id=chunk_id(doc.doc_id, doc.content_hash, payload.chunk_index),
                    payload=payload.to_payload(),
                    dense=[float(x) for x in vector],
                    sparse=bm25_document(payload.passage()),
                )
            )
        self.store.upsert(points)
        self.summary.chunks += len(points)
        if part.final:
            self._write_record(part, base)

    def _write_provisional_record(self, doc: _Doc, base: dict[str, Any]) -> None:
        """A record before the first chunk, so a run stopped before the real one leaves no orphan chunks: the next
        run finds it unchanged in nothing (no size, no hash) and re-ingests the file, or deletes it if it is gone."""
        record = DocumentRecord(**{**base, "content_hash": ""}, incomplete=True)
        self.store.upsert([PointData(id=doc.doc_id, payload=record.to_payload())])

    def _write_record(self, part: _Part, base: dict[str, Any]) -> None:
        doc = part.doc
        total = part.first_index + len(part.chunks)
        pages = self.pages.pop(doc.doc_id, set())
        record = DocumentRecord(
            **base,
            size=doc.found.size,
            mtime_ns=doc.found.mtime_ns,
            chunks=total,
            pages=len(pages) or None,
            ocr_pages=len(self.ocr_pages.pop(doc.doc_id, set())),
            title=next((c.title for c in part.chunks if c.title), None),
        )
        self.store.upsert([PointData(id=doc.doc_id, payload=record.to_payload())])
        log.info("wrote %s (%d chunks)", doc.found.source, total)
        del self.started[doc.doc_id]
        if doc.is_update:
            self.summary.updated += 1
        else:
            self.summary.added += 1

    def _base_payload(self, doc: _Doc) -> dict[str, Any]:
        return {
            "doc_id": doc.doc_id,
            **path_fields(doc.root, doc.source),
            "file_type": file_type(doc.found.path),
            "content_hash": doc.content_hash,
            "ingested_at": self.started[doc.doc_id],
        }


def path_fields(root: str, source: str) -> dict[str, Any]:
    """Where a document is, in its record and in each chunk: `dirs` holds every folder above it, for path filters."""
    parts = source.split("/")[:-1]
    return {"root": root, "source": source, "dirs": ["/".join(parts[: i + 1]) for i in range(len(parts))]}


def ingest_folder(
    settings: Settings,
    root: Path,
    progress: bool | None = None,
    on_file: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Open the collection (created if new) and run one ingestion of root; the embedder loads only if a file changed."""
    _check_folder(root)  # before the collection is created: a typo must not leave an empty one behind
    with Collection(settings, create=True) as collection:
        return IngestJob(collection).run(root, progress, on_file)


def _check_folder(root: Path) -> Path:
    resolved = root.expanduser().resolve()
    if not resolved.is_dir():
        raise RagError(f"{resolved} is not a folder")
    return resolved
