"""Server backend: qdrant-client against a Qdrant server or cluster (QDRANT_URL).

`QDRANT_URL=:memory:` or `QDRANT_URL=path:/some/folder` use qdrant-client's local mode, which speaks the same API
(brute force, for tests and small trials).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from rag.errors import RagError
from rag.store.base import (
    DENSE,
    KEYWORD_FIELDS,
    KIND_CHUNK,
    KIND_DOC,
    KIND_META,
    META_ID,
    SPARSE,
    Hit,
    PointData,
    SearchFilter,
    SparseVec,
)

RRF_K = 60
HNSW_EF = 256  # the same search-time beam as the embedded backend
SCROLL_PAGE = 1000


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _server_filter(flt: SearchFilter | None, kind: str | None = KIND_CHUNK) -> models.Filter | None:
    must: list[Any] = [_match("kind", kind)] if kind else []
    if flt and flt.path_prefix:
        prefix = flt.path_prefix.strip("/")
        must.append(models.Filter(should=[_match("source", prefix), _match("dirs", prefix)]))
    if flt and flt.file_types:
        must.append(
            models.FieldCondition(
                key="file_type", match=models.MatchAny(any=[t.lower() for t in flt.file_types])
            )
        )
    return models.Filter(must=must) if must else None


def _sparse(vec: SparseVec) -> models.SparseVector:
    return models.SparseVector(indices=vec.indices, values=vec.values)


def make_client(url: str, api_key: str | None, timeout: float = 30.0) -> QdrantClient:
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    if url.startswith("path:"):
        return QdrantClient(path=url.removeprefix("path:"))
    return QdrantClient(url=url, api_key=api_key, timeout=int(timeout))


class ServerStore:
    def __init__(self, client: QdrantClient, collection: str, url: str) -> None:
        self.client = client
        self.name = collection
        self.description = f"Qdrant at {url.split('@')[-1]} collection {collection!r}"
        try:
            self._exists = client.collection_exists(collection)
        except Exception as exc:  # connection errors come in many types
            raise RagError(f"cannot reach Qdrant at {url}: {exc}") from exc

    @property
    def exists(self) -> bool:
        return self._exists

    def ensure_collection(self, dimension: int, embedder: str) -> None:
        if self._exists:
            return
        self.client.create_collection(
            self.name,
            vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=16, ef_construct=128),
        )
        for name in KEYWORD_FIELDS:
            self.client.create_payload_index(self.name, name, models.PayloadSchemaType.KEYWORD)
        self._exists = True
        meta = {"kind": KIND_META, "embedder": embedder, "dimension": dimension}
        self.upsert([PointData(id=META_ID, payload=meta)])

    def collection_meta(self) -> dict[str, Any] | None:
        if not self._exists:
            return None
        records = self.client.retrieve(self.name, [META_ID], with_payload=True)
        return dict(records[0].payload or {}) if records else None

    def upsert(self, points: list[PointData]) -> None:
        if points:
            self.client.upsert(self.name, [self._point(p) for p in points], wait=True)

    @staticmethod
    def _point(p: PointData) -> models.PointStruct:
        vector: dict[str, Any] = {}
        if p.dense is not None:
            vector[DENSE] = p.dense
        if p.sparse is not None and p.sparse.indices:
            vector[SPARSE] = _sparse(p.sparse)
        return models.PointStruct(id=p.id, vector=vector, payload=p.payload)

    def delete_document(self, doc_id: str) -> None:
        selector = models.FilterSelector(filter=models.Filter(must=[_match("doc_id", doc_id)]))
        self.client.delete(self.name, points_selector=selector, wait=True)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.client.set_payload(self.name, payload=payload, points=[point_id], wait=True)

    def _scroll(self, flt: models.Filter) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.name, scroll_filter=flt, limit=SCROLL_PAGE, offset=offset, with_payload=True
            )
            out.extend(dict(r.payload or {}) for r in records)
            if offset is None:
                return out

    def document_records(self, root: str | None = None) -> list[dict[str, Any]]:
        if not self._exists:
            return []
        must: list[Any] = [_match("kind", KIND_DOC)] + ([_match("root", root)] if root else [])
        return self._scroll(models.Filter(must=must))

    def chunks_of(self, doc_id: str) -> list[dict[str, Any]]:
        return self._scroll(models.Filter(must=[_match("kind", KIND_CHUNK), _match("doc_id", doc_id)]))

    def count_chunks(self) -> int:
        if not self._exists:
            return 0
        return int(self.client.count(self.name, count_filter=_server_filter(None), exact=True).count)

    def _hits(self, points: list[models.ScoredPoint]) -> list[Hit]:
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def search_dense(self, vector: list[float], limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        result = self.client.query_points(
            self.name,
            query=vector,
            using=DENSE,
            search_params=models.SearchParams(hnsw_ef=HNSW_EF),
            query_filter=_server_filter(flt),
            limit=limit,
            with_payload=True,
        )
        hits = self._hits(result.points)
        for h in hits:
            h.dense_score = h.score
        return hits

    def search_sparse(self, vector: SparseVec, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        result = self.client.query_points(
            self.name,
            query=_sparse(vector),
            using=SPARSE,
            query_filter=_server_filter(flt),
            limit=limit,
            with_payload=True,
        )
        return self._hits(result.points)

    def search_hybrid(
        self, dense: list[float], sparse: SparseVec, limit: int, flt: SearchFilter | None = None
    ) -> list[Hit]:
        server_filter = _server_filter(flt)
        prefetch = [
            models.Prefetch(
                query=dense,
                using=DENSE,
                limit=limit,
                filter=server_filter,
                params=models.SearchParams(hnsw_ef=HNSW_EF),
            )
        ]
        if sparse.indices:
            prefetch.append(
                models.Prefetch(query=_sparse(sparse), using=SPARSE, limit=limit, filter=server_filter)
            )
        result = self.client.query_points(
            self.name,
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE],
        )
        hits = self._hits(result.points)
        query = np.asarray(dense, dtype=np.float32)
        for hit, point in zip(hits, result.points, strict=True):
            vector = point.vector.get(DENSE) if isinstance(point.vector, dict) else None
            hit.dense_score = float(np.dot(query, np.asarray(vector, dtype=np.float32))) if vector else None
        return hits

    def finish(self) -> None:
        """The server indexes on its own."""

    def close(self) -> None:
        self.client.close()
