"""What the UI does, without Gradio: one pipeline per collection, uploads, ingestion, deletion, status."""

from __future__ import annotations

import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.job import IngestJob, IngestSummary
from ingest.loaders import loader_for
from rag.answer import ChatPipeline, open_pipeline
from rag.config import Settings
from rag.embedder import embedder_from_settings
from rag.errors import RagError
from rag.llm import describe_llm
from rag.rerank import reranker_from_settings
from rag.store import check_collection_name, list_collections, open_store


@dataclass
class Upload:
    saved: list[str]
    rejected: list[tuple[str, str]]


class RagService:
    """Shared by every browser session of one app process; safe to call from Gradio's worker threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pipelines: dict[str, ChatPipeline] = {}
        self._lock = threading.Lock()
        self._ingest_locks: dict[str, threading.Lock] = {}

    def pipeline(self, collection: str) -> ChatPipeline:
        """The collection's pipeline, opened on first use; a store held elsewhere raises a clear RagError."""
        with self._lock:
            found = self._pipelines.get(collection)
            if found is None:
                found = open_pipeline(self.settings, collection)
                self._pipelines[collection] = found
            return found

    def collections(self) -> list[str]:
        """Collections that exist, plus the configured one (chat there says how to fill it)."""
        try:
            found = list_collections(self.settings)
        except Exception as exc:  # a Qdrant server that cannot be reached fails in many types
            raise RagError(f"cannot list the collections: {exc}") from exc
        with self._lock:
            found += list(self._pipelines)
        return sorted({*found, self.settings.collection})

    def create_collection(self, name: str) -> str:
        """An empty collection, ready for uploads: the only way the UI creates one (besides ingesting)."""
        name = check_collection_name((name or "").strip())
        if name in list_collections(self.settings):
            raise RagError(f"collection {name!r} already exists")
        self._create(name)
        return name

    def _create(self, name: str) -> None:
        embedder = embedder_from_settings(self.settings)
        store = open_store(self.settings, name, create=True)
        try:
            store.ensure_collection(embedder.dimension, embedder.name)
        finally:
            store.close()

    def close(self) -> None:
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.store.close()
            self._pipelines.clear()

    def uploads_dir(self, collection: str) -> Path:
        return self.settings.data_dir / "uploads" / check_collection_name(collection)

    def save_uploads(self, collection: str, files: list[str]) -> Upload:
        """Copy uploaded files (zips unpacked, safely) into the collection's upload folder."""
        target = self.uploads_dir(collection)
        target.mkdir(parents=True, exist_ok=True)
        saved: list[str] = []
        rejected: list[tuple[str, str]] = []
        for name in files:
            path = Path(name)
            if path.suffix.lower() == ".zip":
                try:
                    saved += _unzip(path, target / path.stem)
                except (zipfile.BadZipFile, OSError, ValueError) as exc:
                    rejected.append((path.name, f"bad zip: {exc}"))
            elif loader_for(path) is None:
                rejected.append((path.name, f"unsupported file type {path.suffix or '(none)'}"))
            else:
                shutil.copyfile(path, target / path.name)
                saved.append(path.name)
        return Upload(saved, rejected)

    def ingest_uploads(
        self, collection: str, on_file: Callable[[int, int], None] | None = None
    ) -> IngestSummary:
        """Ingest the upload folder in this process, through the collection's open store (created if new)."""
        if collection not in list_collections(self.settings):
            self._create(check_collection_name(collection))
        pipeline = self.pipeline(collection)
        lock = self._ingest_locks.setdefault(collection, threading.Lock())
        if not lock.acquire(blocking=False):
            raise RagError("an ingestion of this collection is already running; wait for it to finish")
        try:
            embedder = embedder_from_settings(self.settings)
            job = IngestJob(self.settings, pipeline.store, embedder)
            return job.run(self.uploads_dir(collection), progress=False, on_file=on_file)
        finally:
            lock.release()

    def documents(self, collection: str) -> list[dict[str, Any]]:
        records = self.pipeline(collection).store.document_records()
        return sorted(records, key=lambda r: (str(r.get("root")), str(r.get("source"))))

    def delete_document(self, collection: str, doc_id: str) -> str:
        """Delete a document's chunks; an uploaded file goes too, so a re-ingest does not bring it back."""
        store = self.pipeline(collection).store
        record = next((r for r in store.document_records() if r.get("doc_id") == doc_id), None)
        if record is None:
            raise RagError("no such document in this collection")
        store.delete_document(doc_id)
        uploads = self.uploads_dir(collection).resolve()
        if Path(str(record.get("root"))).resolve() == uploads:
            (uploads / str(record["source"])).unlink(missing_ok=True)
        return str(record["source"])

    def status(self, collection: str) -> dict[str, str]:
        _, rerank = reranker_from_settings(self.settings)
        llm = describe_llm(self.settings)
        where = "embedded llama.cpp server" if llm["embedded"] else llm["host"]
        store = (
            f"Qdrant server {self.settings.qdrant_url}"
            if self.settings.qdrant_url
            else "qdrant-edge (embedded)"
        )
        return {
            "embedder": self.settings.embed_model,
            "reranker": rerank.describe(),
            "llm": f"{llm['model']} @ {where}",
            "store": f"{store}, collection {collection!r}",
        }


def _unzip(path: Path, target: Path) -> list[str]:
    saved: list[str] = []
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            name = PurePosixPath(member.filename)
            if member.is_dir() or name.is_absolute() or ".." in name.parts:
                continue  # directories are implied; absolute or parent paths would escape the upload folder
            if loader_for(Path(name.name)) is None:
                continue
            destination = target / Path(*name.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, destination.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            saved.append(str(destination.relative_to(target.parent)))
    if not saved:
        raise ValueError("no supported document inside")
    return saved
