"""Qdrant storage: embedded qdrant-edge by default, a Qdrant server when QDRANT_URL is set."""

from __future__ import annotations

from rag.config import Settings
from rag.errors import BadCollectionName, CollectionNotFound
from rag.store.base import Hit, PointData, SearchFilter, SparseVec, VectorStore
from rag.store.qdrant import Layout


def check_collection_name(name: str) -> str:
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise BadCollectionName(f"collection name {name!r} must be letters, digits, '-' or '_'")
    return name


def _server_client(settings: Settings):  # type: ignore[no-untyped-def]
    from rag.store.server import make_client

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return make_client(settings.qdrant_url or "", key)


def list_collections(settings: Settings) -> list[str]:
    """The collections that hold a store, by name; reading creates nothing."""
    if settings.qdrant_url:
        client = _server_client(settings)
        try:
            return sorted(c.name for c in client.get_collections().collections)
        finally:
            client.close()
    root = settings.data_dir / "collections"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _edge_has_store(settings, p.name))


def _edge_has_store(settings: Settings, name: str) -> bool:
    shard = settings.collection_dir(name) / "shard"
    return shard.is_dir() and any(shard.iterdir())


def open_store(settings: Settings, collection: str | None = None, create: bool = True) -> VectorStore:
    """The collection's store; with create=False a collection that does not exist is an error, not a new one."""
    name = check_collection_name(collection or settings.collection)
    if settings.qdrant_url:
        from rag.store.server import ServerStore

        store = ServerStore(_server_client(settings), name, settings.qdrant_url, layout(settings))
        if not create and not store.exists:
            store.close()
            raise _no_collection(name)
        return store
    if not create and not _edge_has_store(settings, name):
        raise _no_collection(name)  # before EdgeStore, which would create the folder and its lock
    from rag.store.edge import EdgeStore

    return EdgeStore(settings.collection_dir(name), layout(settings))


def layout(settings: Settings) -> Layout:
    return Layout(
        on_disk=settings.store_on_disk,
        int8=settings.store_quantization == "int8",
        shards=settings.qdrant_shards,
        replicas=settings.qdrant_replicas,
        hnsw_m=settings.store_hnsw_m,
        hnsw_ef_construct=settings.store_hnsw_ef_construct,
        hnsw_ef=settings.store_hnsw_ef,
    )


def _no_collection(name: str) -> CollectionNotFound:
    return CollectionNotFound(
        f"there is no collection {name!r} yet: ingest documents into it first "
        f"(rag ingest FOLDER --collection {name}, or the UI's Documents tab)"
    )


__all__ = [
    "Hit",
    "PointData",
    "SearchFilter",
    "SparseVec",
    "VectorStore",
    "check_collection_name",
    "list_collections",
    "open_store",
]
