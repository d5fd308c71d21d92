"""What a collection holds, document by document."""

from __future__ import annotations

from typing import Any

from rag.config import Settings
from rag.store import open_store

DOC_FIELDS = ("doc_id", "source", "root", "file_type", "chunks", "pages", "ingested_at", "title", "size")


def list_documents(settings: Settings, collection: str | None = None) -> list[dict[str, Any]]:
    store = open_store(settings, collection, create=False)
    try:
        records = store.document_records()
    finally:
        store.close()
    docs = [{k: r.get(k) for k in DOC_FIELDS} for r in records]
    return sorted(docs, key=lambda d: (d["root"] or "", d["source"] or ""))
