"""Server backend: qdrant-client against a Qdrant server or cluster (QDRANT_URL).

`QDRANT_URL=:memory:` or `QDRANT_URL=path:/some/folder` use qdrant-client's local mode, which speaks the same API
(brute force, for tests and small trials).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from qdrant_client import QdrantClient, models

from rag.errors import RagError
from rag.store.base import DATETIME_FIELDS, DENSE
from rag.store.qdrant import (
    OVERSAMPLING,
    CollectionSpec,
    Layout,
    Nearest,
    QdrantStore,
    Row,
    Vector,
    native_vector,
)


def make_client(url: str, api_key: str | None, timeout: float = 30.0) -> QdrantClient:
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    if url.startswith("path:"):
        return QdrantClient(path=url.removeprefix("path:"))
    return QdrantClient(url=url, api_key=api_key, timeout=int(timeout))


def _params(search: Nearest, local: bool) -> models.SearchParams | None:
    if (
        local
    ):  # qdrant-client's local mode searches exactly and warns at every search that is given parameters
        return None
    # Rescoring asked for always: the server ignores it where a collection has no quantized copy.
    return models.SearchParams(
        hnsw_ef=search.ef,
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING),
    )


def _int8() -> models.ScalarQuantization:
    # quantile 0.99: the 1% most extreme values are clipped rather than stretching every vector's int8 range
    return models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
    )


def _native(vector: Vector) -> list[float] | models.SparseVector:
    return native_vector(vector, models.SparseVector)


log = logging.getLogger("rag.store")


class ServerEngine:
    """The engine adapter over one collection of a Qdrant server (or qdrant-client's local mode)."""

    def __init__(self, client: QdrantClient, collection: str, url: str) -> None:
        self.client = client
        self.name = collection
        self.local = url == ":memory:" or url.startswith("path:")
        self.description = f"Qdrant at {url.split('@')[-1]} collection {collection!r}"
        try:
            self._exists = client.collection_exists(collection)
            if self._exists:
                self._index_dates()
        except Exception as exc:  # connection errors come in many types
            raise RagError(f"cannot reach Qdrant at {url}: {exc}") from exc

    def _index_dates(self) -> None:
        """A collection made before ingestion dates were indexed gets the index (a server may refuse filters on
        fields without one)."""
        indexed = self.client.get_collection(self.name).payload_schema or {}
        for name in DATETIME_FIELDS:
            if name in indexed:
                continue
            try:
                self.client.create_payload_index(self.name, name, models.PayloadSchemaType.DATETIME)
            except (
                Exception
            ) as exc:  # a read-only key: the collection still answers; only date filters may fail
                log.warning("cannot add the %s index to collection %r: %s", name, self.name, exc)

    @property
    def exists(self) -> bool:
        return self._exists

    @staticmethod
    def match(key: str, value: str) -> models.FieldCondition:
        return models.FieldCondition(key=key, match=models.MatchValue(value=value))

    @staticmethod
    def match_any(key: str, values: list[str]) -> models.FieldCondition:
        return models.FieldCondition(key=key, match=models.MatchAny(any=values))

    @staticmethod
    def filter(must: list[Any] | None = None, should: list[Any] | None = None) -> models.Filter:
        return models.Filter(must=must, should=should)

    @staticmethod
    def datetime_range(key: str, gte: str | None, lt: str | None) -> models.FieldCondition:
        def moment(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        return models.FieldCondition(key=key, range=models.DatetimeRange(gte=moment(gte), lt=moment(lt)))

    @staticmethod
    def has_id(ids: list[str]) -> models.HasIdCondition:
        return models.HasIdCondition(has_id=list(ids))

    def create(self, spec: CollectionSpec) -> None:
        self.client.create_collection(
            self.name,
            vectors_config={
                spec.dense: models.VectorParams(
                    size=spec.dimension, distance=models.Distance.COSINE, on_disk=spec.layout.on_disk
                )
            },
            sparse_vectors_config={spec.sparse: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            on_disk_payload=spec.layout.on_disk,
            shard_number=spec.layout.shards,
            replication_factor=spec.layout.replicas,
            quantization_config=_int8() if spec.layout.int8 else None,
            hnsw_config=models.HnswConfigDiff(
                m=spec.layout.hnsw_m, ef_construct=spec.layout.hnsw_ef_construct
            ),
        )
        for name in spec.keyword_fields:
            self.client.create_payload_index(self.name, name, models.PayloadSchemaType.KEYWORD)
        for name in spec.datetime_fields:
            self.client.create_payload_index(self.name, name, models.PayloadSchemaType.DATETIME)
        self._exists = True

    def upsert(self, points: list[Row]) -> None:
        native = [
            models.PointStruct(id=i, vector={k: _native(v) for k, v in vs.items()}, payload=pl)
            for i, vs, pl in points
        ]
        self.client.upsert(self.name, native, wait=True)

    def delete(self, where: models.Filter) -> None:
        self.client.delete(self.name, points_selector=models.FilterSelector(filter=where), wait=True)

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.client.set_payload(self.name, payload=payload, points=[point_id], wait=True)

    def set_payload_where(self, where: models.Filter, payload: dict[str, Any]) -> None:
        self.client.set_payload(
            self.name, payload=payload, points=models.FilterSelector(filter=where), wait=True
        )

    def retrieve(self, point_id: str) -> list[models.Record]:
        return self.client.retrieve(self.name, [point_id], with_payload=True)

    def scroll(
        self, where: models.Filter, offset: Any, limit: int, vectors: bool = False
    ) -> tuple[list[models.Record], Any]:
        return self.client.scroll(
            self.name,
            scroll_filter=where,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=[DENSE] if vectors else False,
        )

    def count(self, where: models.Filter) -> int:
        return int(self.client.count(self.name, count_filter=where, exact=True).count)

    def nearest(self, search: Nearest) -> list[models.ScoredPoint]:
        result = self.client.query_points(
            self.name,
            query=_native(search.vector),
            using=search.using,
            search_params=_params(search, self.local),
            query_filter=search.where,
            limit=search.limit,
            with_payload=True,
            with_vectors=[search.with_vector] if search.with_vector else False,
        )
        return result.points

    def flush(self) -> None:
        """The server makes writes durable on its own (upserts wait for it)."""

    def optimize(self) -> None:
        """The server builds its indexes on its own."""

    def close(self) -> None:
        self.client.close()


class ServerStore(QdrantStore):
    """One collection of a Qdrant server, or of qdrant-client's local mode."""

    def __init__(self, client: QdrantClient, collection: str, url: str, layout: Layout | None = None) -> None:
        super().__init__(ServerEngine(client, collection, url), layout)
        self.client = client
        self.name = collection
