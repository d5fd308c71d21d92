"""The store interface both Qdrant backends implement, and the payload schema they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from rag.config import BM25_WEIGHT
from rag.store.payload import ChunkPayload, DocumentRecord
from rag.store.schema import (
    DATETIME_FIELDS,
    DENSE,
    KEYWORD_FIELDS,
    KIND_CHUNK,
    KIND_DOC,
    KIND_META,
    META_ID,
    SPARSE,
    chunk_id,
    document_id,
)

__all__ = [
    "DATETIME_FIELDS",
    "DENSE",
    "KEYWORD_FIELDS",
    "KIND_CHUNK",
    "KIND_DOC",
    "KIND_META",
    "META_ID",
    "SPARSE",
    "chunk_id",
    "document_id",
]


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass
class PointData:
    id: str
    payload: dict[str, Any]
    dense: list[float] | None = None
    sparse: SparseVec | None = None


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    dense_score: float | None = None  # cosine similarity with the query: a relevance, unlike the fused score
    rerank_score: float | None = None  # the cross-encoder's relevance, when it ran

    @cached_property
    def chunk(self) -> ChunkPayload:
        return ChunkPayload.from_payload(self.payload)

    @property
    def relevance(self) -> float:
        """The score that means relevance: the cross-encoder's, else the dense cosine."""
        if self.rerank_score is not None:
            return self.rerank_score
        return self.dense_score if self.dense_score is not None else 0.0


@dataclass
class SearchFilter:
    """Restrict a search to chosen documents, a folder or file prefix, file types, and an ingestion-date range
    (ISO 8601 instants: from inclusive, until exclusive); every part given must hold."""

    path_prefix: str | None = None
    file_types: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    ingested_from: str | None = None
    ingested_until: str | None = None

    def is_empty(self) -> bool:
        return not (
            self.path_prefix or self.file_types or self.doc_ids or self.ingested_from or self.ingested_until
        )


class VectorStore(Protocol):
    """What the app needs from Qdrant, embedded or server."""

    description: str

    def ensure_collection(self, dimension: int, embedder: str, backend: str | None = None) -> None: ...

    def collection_meta(self) -> dict[str, Any] | None: ...

    def upsert(self, points: list[PointData]) -> None: ...

    def delete_document(self, doc_id: str) -> None: ...

    def document_records(self, root: str | None = None) -> list[DocumentRecord]: ...

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None: ...

    def set_chunks_payload(self, doc_id: str, payload: dict[str, Any]) -> None:
        """Set these payload fields on every chunk of the document, in one update."""
        ...

    def count_chunks(self) -> int: ...

    def search_dense(self, vector: list[float], limit: int, flt: SearchFilter | None = None) -> list[Hit]: ...

    def search_sparse(self, vector: SparseVec, limit: int, flt: SearchFilter | None = None) -> list[Hit]: ...

    def search_hybrid(
        self,
        dense: list[float],
        sparse: SparseVec,
        limit: int,
        flt: SearchFilter | None = None,
        sparse_weight: float = BM25_WEIGHT,
    ) -> list[Hit]:
        """The best of the dense and the BM25 search, each hit scored (1 - sparse_weight) * cosine +
        sparse_weight * BM25, both scaled to [0, 1] over the hits."""
        ...

    def chunks_of(self, doc_id: str) -> list[dict[str, Any]]: ...

    def chunk_vectors(self, doc_id: str) -> dict[str, list[float]]: ...

    def finish(self) -> None:
        """Make writes durable and build the index (HNSW)."""
        ...

    def close(self) -> None: ...
