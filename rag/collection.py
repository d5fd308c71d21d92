"""A collection opened once: its store, its embedder (loaded on first use) and its meta, checked once, closed once.

Ingestion, search and chat are built from a Collection; nothing else opens a store or checks the embedder.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

from rag.config import Settings
from rag.embedder import LazyEmbedder, chosen_backend, embedder_name
from rag.errors import DocumentNotFound, RagError
from rag.store import VectorStore, check_collection_name, open_store
from rag.store.payload import DocumentRecord


class Collection:
    def __init__(self, settings: Settings, name: str | None = None, create: bool = False) -> None:
        """Open the named collection (the settings' by default); create=False: it must exist already."""
        self.settings = settings
        self.name = check_collection_name(name or settings.collection)
        self.store: VectorStore = open_store(settings, self.name, create=create)
        self._closed = threading.Event()
        try:
            self.embedder = self._embedder()
        except BaseException:
            self.close()
            raise

    def _embedder(self) -> LazyEmbedder:
        """The settings' embedder, checked against the one that built the collection; with RAG_EMBED_BACKEND=auto
        it runs as the collection was built."""
        meta = self.store.collection_meta()
        name = embedder_name(self.settings)
        built_with = (meta or {}).get("embedder")
        if built_with not in (None, name):
            raise RagError(
                f"collection {self.name!r} was built with embedder {built_with!r}, not {name!r}: "
                "set RAG_EMBED_MODEL to it, or use another collection"
            )
        if self.settings.embed_url:
            return LazyEmbedder(self.settings)
        # Collections from before backends were recorded were all embedded by torch.
        built_backend = None if meta is None else str(meta.get("embed_backend", "torch"))
        return LazyEmbedder(self.settings, chosen_backend(self.settings, built_backend))

    def ensure_created(self) -> None:
        """Create the store's collection (loads the embedder for its dimension); a no-op when it exists."""
        self.store.ensure_collection(self.embedder.dimension, self.embedder.name, self.embedder.backend)

    def documents(self) -> list[DocumentRecord]:
        return sorted(self.store.document_records(), key=lambda d: (d.root, d.source))

    def delete_document(self, doc_id: str) -> DocumentRecord:
        """Delete a document's chunks and record; its record, for the caller to report."""
        record = next((d for d in self.documents() if d.doc_id == doc_id), None)
        if record is None:
            raise DocumentNotFound("no such document in this collection")
        self.store.delete_document(doc_id)
        return record

    def missing_documents(self) -> list[DocumentRecord]:
        """Documents whose file is gone (deleted, or moved and not ingested from its new place)."""
        return [d for d in self.documents() if file_gone(d.path)]

    def remove_missing(self) -> list[DocumentRecord]:
        """Delete the documents whose file is gone, chunks and records; those it deleted."""
        gone = self.missing_documents()
        for doc in gone:
            self.store.delete_document(doc.doc_id)
        if gone:
            self.store.finish()
        return gone

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def file_gone(path: str) -> bool:
    """Nothing is at path. A file we may not stat (an unreadable folder) is not gone: it may come back readable,
    and removing its document would lose it."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
