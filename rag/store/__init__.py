"""Qdrant storage: embedded qdrant-edge by default, a Qdrant server when QDRANT_URL is set."""

from __future__ import annotations

from rag.config import Settings
from rag.errors import RagError
from rag.store.base import Hit, PointData, SearchFilter, SparseVec, VectorStore


def open_store(settings: Settings, collection: str | None = None) -> VectorStore:
    name = collection or settings.collection
    if not name.replace("-", "").replace("_", "").isalnum():
        raise RagError(f"collection name {name!r} must be letters, digits, '-' or '_'")
    if settings.qdrant_url:
        from rag.store.server import ServerStore, make_client

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerStore(make_client(settings.qdrant_url, key), name, settings.qdrant_url)
    from rag.store.edge import EdgeStore

    return EdgeStore(settings.collection_dir(name))


__all__ = ["Hit", "PointData", "SearchFilter", "SparseVec", "VectorStore", "open_store"]
