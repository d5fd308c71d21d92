"""Embedded backend: qdrant-edge, Qdrant's own engine in-process (HNSW, WAL, payload indexes)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from rag.errors import RagError, StoreLockedError
from rag.store.base import DATETIME_FIELDS, DENSE, KIND_CHUNK, SearchFilter
from rag.store.qdrant import (
    OVERSAMPLING,
    CollectionSpec,
    Layout,
    Nearest,
    QdrantStore,
    Row,
    Vector,
    build_filter,
    native_vector,
)

FULL_SCAN_THRESHOLD = 10000  # qdrant-edge has no default; this is the server's


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


def _params(search: Nearest) -> qe.SearchParams:
    # Rescoring asked for always: the engine ignores it where a collection has no quantized copy.
    return qe.SearchParams(
        hnsw_ef=search.ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
    )


def _native(vector: Vector) -> list[float] | qe.SparseVector:
    return native_vector(vector, qe.SparseVector)


def _int8() -> qe.ScalarQuantizationConfig:
    # quantile 0.99: the 1% most extreme values are clipped rather than stretching every vector's int8 range
    return qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)


def _query(search: Nearest) -> qe.Query:
    return qe.Query.Nearest(_native(search.vector), using=search.using)


class EdgeEngine:
    """The engine adapter over one qdrant-edge shard in `folder/shard`, held under the folder's lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"qdrant-edge at {folder}"
        self._lock = _DirLock(folder)
        self._shard: qe.EdgeShard | None = None
        shard_dir = folder / "shard"
        if shard_dir.exists() and any(shard_dir.iterdir()):
            try:
                self._shard = qe.EdgeShard.load(str(shard_dir))
                self._index_dates(self._shard)
            except Exception as exc:  # the engine raises a bare Exception
                self._lock.release()
                raise RagError(f"cannot open the store at {shard_dir}: {exc}") from exc

    @staticmethod
    def _index_dates(shard: qe.EdgeShard) -> None:
        """A collection made before ingestion dates were indexed gets the index (once; the filter works without
        it, by reading every payload)."""
        indexed = shard.info().payload_schema
        for name in DATETIME_FIELDS:
            if name not in indexed:
                shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Datetime))

    @property
    def exists(self) -> bool:
        return self._shard is not None

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RagError(f"collection at {self.folder} is empty: run `rag ingest` first")
        return self._shard

    @staticmethod
    def match(key: str, value: str) -> qe.FieldCondition:
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))

    @staticmethod
    def match_any(key: str, values: list[str]) -> qe.FieldCondition:
        return qe.FieldCondition(key=key, match=qe.MatchAny(values))

    @staticmethod
    def filter(must: list[Any] | None = None, should: list[Any] | None = None) -> qe.Filter:
        return qe.Filter(must=must, should=should)

    @staticmethod
    def datetime_range(key: str, gte: str | None, lt: str | None) -> qe.FieldCondition:
        return qe.FieldCondition(key=key, range=qe.RangeDateTime(gte=gte, lt=lt))

    @staticmethod
    def has_id(ids: list[str]) -> qe.HasIdCondition:
        return qe.HasIdCondition(point_ids=set(ids))

    def create(self, spec: CollectionSpec) -> None:
        config = qe.EdgeConfig(
            vectors={
                spec.dense: qe.EdgeVectorParams(
                    size=spec.dimension,
                    distance=qe.Distance.Cosine,
                    memory=qe.Memory.Cold if spec.layout.on_disk else None,
                    quantization_config=_int8() if spec.layout.int8 else None,
                )
            },
            sparse_vectors={spec.sparse: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            payload_memory=qe.Memory.Cold if spec.layout.on_disk else None,  # None: the engine's default
            hnsw_config=qe.HnswIndexConfig(
                m=spec.layout.hnsw_m,
                ef_construct=spec.layout.hnsw_ef_construct,
                full_scan_threshold=FULL_SCAN_THRESHOLD,
            ),
        )
        self._shard = qe.EdgeShard.create(str(self.folder / "shard"), config)
        for name in spec.keyword_fields:
            self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
        for name in spec.datetime_fields:
            self._shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Datetime))

    def upsert(self, points: list[Row]) -> None:
        native = [
            qe.Point(id=i, vector={k: _native(v) for k, v in vs.items()}, payload=pl) for i, vs, pl in points
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(native))

    def delete(self, where: qe.Filter) -> None:
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(where))

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.shard.update(qe.UpdateOperation.set_payload([point_id], payload))

    def set_payload_where(self, where: qe.Filter, payload: dict[str, Any]) -> None:
        self.shard.update(qe.UpdateOperation.set_payload_by_filter(where, payload))

    def retrieve(self, point_id: str) -> list[qe.Record]:
        return self.shard.retrieve([point_id], with_payload=True, with_vector=False)

    def scroll(
        self, where: qe.Filter, offset: Any, limit: int, vectors: bool = False
    ) -> tuple[list[qe.Record], Any]:
        return self.shard.scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=limit,
                filter=where,
                with_payload=True,
                with_vector=[DENSE] if vectors else False,
            )
        )

    def count(self, where: qe.Filter) -> int:
        return int(self.shard.count(qe.CountRequest(filter=where)))

    def nearest(self, search: Nearest) -> list[qe.ScoredPoint]:
        request = qe.QueryRequest(
            limit=search.limit,
            query=_query(search),
            filter=search.where,
            with_payload=True,
            with_vector=[search.with_vector] if search.with_vector else False,
            params=_params(search),
        )
        return self.shard.query(request)

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
        self._lock.release()


class EdgeStore(QdrantStore):
    """One qdrant-edge shard per collection, under `<data_dir>/collections/<name>/shard`."""

    def __init__(self, folder: Path, layout: Layout | None = None) -> None:
        self.edge = EdgeEngine(folder)
        super().__init__(self.edge, layout)
        self.folder = folder

    @property
    def shard(self) -> qe.EdgeShard:
        """The shard itself, for benchmarks that query it beyond the store's interface."""
        return self.edge.shard


def edge_filter(flt: SearchFilter | None = None, kind: str | None = KIND_CHUNK) -> qe.Filter | None:
    """The qdrant-edge filter the store searches `kind` points with, for queries made on the shard directly."""
    return build_filter(EdgeEngine, flt, kind=kind)
