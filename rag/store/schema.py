"""The names every stored point shares: vector names, point kinds, indexed fields and ids. Below both the store
interface (base.py) and the payloads (payload.py), so neither imports the other to read them."""

from __future__ import annotations

import uuid

DENSE = "dense"
SPARSE = "bm25"
KIND_CHUNK = "chunk"
KIND_DOC = "doc"
KIND_META = "meta"
KEYWORD_FIELDS = ("kind", "doc_id", "root", "source", "dirs", "file_type")
DATETIME_FIELDS = (
    "ingested_at",
)  # indexed for ingestion-date filters (collections created from 2026-12-05 on)

_NAMESPACE = uuid.UUID("6f1c1f0e-3a44-4d7e-9d55-2f4b8f0a7c11")
META_ID = str(uuid.uuid5(_NAMESPACE, "collection-meta"))


def document_id(root: str, source: str) -> str:
    """Stable id of a document: its root and path relative to it."""
    return str(uuid.uuid5(_NAMESPACE, f"{root}\0{source}"))


def chunk_id(doc_id: str, content_hash: str, index: int) -> str:
    """Deterministic, so a re-run after a crash overwrites instead of duplicating."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}\0{content_hash}\0{index}"))
