"""Embedded backend: qdrant-edge, Qdrant's own engine in-process (HNSW, WAL, payload indexes)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from rag.errors import RagError, StoreLockedError
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
HNSW_EF = 256  # search-time beam: recall over speed (benchmarks/retrieval_bench.py measures both)
_DENSE_PARAMS = qe.SearchParams(hnsw_ef=HNSW_EF)
_RRF: Any = qe.Fusion.Rrf(k=RRF_K)  # Any: the stub's query union omits Fusion's inner classes
SCROLL_PAGE = 1000


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _edge_filter(flt: SearchFilter | None, kind: str | None = KIND_CHUNK) -> qe.Filter | None:
    must: list[Any] = [_match("kind", kind)] if kind else []
    if flt and flt.path_prefix:
        prefix = flt.path_prefix.strip("/")
        must.append(qe.Filter(should=[_match("source", prefix), _match("dirs", prefix)]))
    if flt and flt.file_types:
        must.append(
            qe.FieldCondition(key="file_type", match=qe.MatchAny([t.lower() for t in flt.file_types]))
        )
    return qe.Filter(must=must) if must else None


def _sparse(vec: SparseVec) -> qe.SparseVector:
    return qe.SparseVector(indices=vec.indices, values=vec.values)


class _DirLock:
    """An exclusive, non-blocking lock on the store folder, so a second process gets a clear message."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise StoreLockedError(
                f"the store {folder} is in use by process {holder} (a running `rag ingest` or `rag ui`?); "
                "wait for it to finish or set QDRANT_URL to share a Qdrant server"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class EdgeStore:
    """One qdrant-edge shard per collection, under `<data_dir>/collections/<name>/shard`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"qdrant-edge at {folder}"
        self._lock = _DirLock(folder)
        self._shard: qe.EdgeShard | None = None
        shard_dir = folder / "shard"
        if shard_dir.exists() and any(shard_dir.iterdir()):
            try:
                self._shard = qe.EdgeShard.load(str(shard_dir))
            except Exception as exc:  # the engine raises a bare Exception
                self._lock.release()
                raise RagError(f"cannot open the store at {shard_dir}: {exc}") from exc

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RagError(f"collection at {self.folder} is empty: run `rag ingest` first")
        return self._shard

    def ensure_collection(self, dimension: int, embedder: str) -> None:
        if self._shard is None:
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=128, full_scan_threshold=10000),
            )
            self._shard = qe.EdgeShard.create(str(self.folder / "shard"), config)
            for name in KEYWORD_FIELDS:
                self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            meta = {"kind": KIND_META, "embedder": embedder, "dimension": dimension}
            self.upsert([PointData(id=META_ID, payload=meta)])
            self._shard.flush()

    def collection_meta(self) -> dict[str, Any] | None:
        if self._shard is None:
            return None
        records = self._shard.retrieve([META_ID], with_payload=True, with_vector=False)
        return dict(records[0].payload or {}) if records else None

    def upsert(self, points: list[PointData]) -> None:
        if not points:
            return
        self.shard.update(qe.UpdateOperation.upsert_points([self._point(p) for p in points]))

    @staticmethod
    def _point(p: PointData) -> qe.Point:
        vector: dict[str, Any] = {}
        if p.dense is not None:
            vector[DENSE] = p.dense
        if p.sparse is not None and p.sparse.indices:
            vector[SPARSE] = _sparse(p.sparse)
        return qe.Point(id=p.id, vector=vector, payload=p.payload)

    def delete_document(self, doc_id: str) -> None:
        self.shard.update(
            qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[_match("doc_id", doc_id)]))
        )

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.shard.update(qe.UpdateOperation.set_payload([point_id], payload))

    def _scroll(self, flt: qe.Filter | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            records, offset = self.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=flt, with_payload=True)
            )
            out.extend(dict(r.payload or {}) for r in records)
            if offset is None:
                return out

    def document_records(self, root: str | None = None) -> list[dict[str, Any]]:
        if self._shard is None:
            return []
        must: list[Any] = [_match("kind", KIND_DOC)] + ([_match("root", root)] if root else [])
        return self._scroll(qe.Filter(must=must))

    def chunks_of(self, doc_id: str) -> list[dict[str, Any]]:
        return self._scroll(qe.Filter(must=[_match("kind", KIND_CHUNK), _match("doc_id", doc_id)]))

    def count_chunks(self) -> int:
        if self._shard is None:
            return 0
        return int(self._shard.count(qe.CountRequest(filter=_edge_filter(None))))

    def _hits(self, points: list[qe.ScoredPoint]) -> list[Hit]:
        return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def search_dense(self, vector: list[float], limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector, using=DENSE),
            filter=_edge_filter(flt),
            with_payload=True,
            params=_DENSE_PARAMS,
        )
        hits = self._hits(self.shard.query(request))
        for h in hits:
            h.dense_score = h.score
        return hits

    def search_sparse(self, vector: SparseVec, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(_sparse(vector), using=SPARSE),
            filter=_edge_filter(flt),
            with_payload=True,
        )
        return self._hits(self.shard.query(request))

    def search_hybrid(
        self, dense: list[float], sparse: SparseVec, limit: int, flt: SearchFilter | None = None
    ) -> list[Hit]:
        edge_filter = _edge_filter(flt)
        prefetches = [
            qe.Prefetch(
                limit=limit,
                query=qe.Query.Nearest(dense, using=DENSE),
                filter=edge_filter,
                params=_DENSE_PARAMS,
            )
        ]
        if sparse.indices:
            prefetches.append(
                qe.Prefetch(
                    limit=limit, query=qe.Query.Nearest(_sparse(sparse), using=SPARSE), filter=edge_filter
                )
            )
        request = qe.QueryRequest(
            limit=limit,
            prefetches=prefetches,
            query=_RRF,
            with_payload=True,
            with_vector=[DENSE],
        )
        points = self.shard.query(request)
        hits = self._hits(points)
        for hit, point in zip(hits, points, strict=True):
            hit.dense_score = _dot(dense, _dense_of(point.vector))
        return hits

    def finish(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.optimize()
            self._shard.flush()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
        self._lock.release()


def _dense_of(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):
        value = vector.get(DENSE)
        return list(value) if value is not None else None
    return None


def _dot(a: list[float], b: list[float] | None) -> float | None:
    if b is None:
        return None
    return float(np.dot(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)))
