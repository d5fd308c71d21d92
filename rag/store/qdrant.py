"""The store both Qdrant backends share: schema, filters, search and hit conversion over a thin engine adapter.

An engine (rag/store/edge.py: qdrant-edge in-process; rag/store/server.py: qdrant-client) only translates these
calls into its library's objects, so a change to what is stored or how it is filtered is made once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import numpy as np

from rag.config import BM25_WEIGHT, HNSW_EF, HNSW_EF_CONSTRUCT, HNSW_M
from rag.store.base import (
    DATETIME_FIELDS,
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
from rag.store.payload import DocumentRecord

SCROLL_PAGE = 1000

# An object of the engine's own library (a condition or filter): opaque here, typed in its adapter.
Native = Any
Vector = list[float] | SparseVec
Row = tuple[str, dict[str, Vector], dict[str, Any]]  # a point to write: id, named vectors, payload
S = TypeVar("S")


@dataclass(frozen=True)
class Layout:
    """Where a new collection keeps its data. on_disk: dense vectors and payloads memory-mapped from disk, not
    held in RAM; int8: a scalar-quantized copy of the dense vectors kept in RAM, searched first, its best
    candidates rescored with the originals."""

    on_disk: bool = False
    int8: bool = False
    shards: int | None = None  # a Qdrant cluster's: None keeps the server's default
    replicas: int | None = None
    hnsw_m: int = HNSW_M  # the graph's links per point and build beam, fixed when the collection is created
    hnsw_ef_construct: int = HNSW_EF_CONSTRUCT
    hnsw_ef: int = HNSW_EF  # the search beam, read at each search


# Candidates rescored with the original vectors, per result asked for, when the collection has int8 copies.
OVERSAMPLING = 2.0


@dataclass(frozen=True)
class CollectionSpec:
    """A new collection: a cosine dense vector, a BM25 sparse vector with the IDF modifier, keyword indexes."""

    dimension: int
    layout: Layout = Layout()
    dense: str = DENSE
    sparse: str = SPARSE
    keyword_fields: tuple[str, ...] = KEYWORD_FIELDS
    datetime_fields: tuple[str, ...] = DATETIME_FIELDS


@dataclass(frozen=True)
class Nearest:
    """One nearest-neighbour search; ef None keeps the engine's default; with_vector names a vector to return."""

    vector: Vector
    using: str
    limit: int
    where: Native | None
    ef: int | None = None
    with_vector: str | None = None


class Stored(Protocol):
    """A record as both libraries return it."""

    @property
    def payload(self) -> Mapping[str, Any] | None: ...


class Scrolled(Stored, Protocol):
    """A point as both libraries list it (its vector None unless asked for)."""

    @property
    def id(self) -> object: ...

    @property
    def vector(self) -> object: ...


class Found(Scrolled, Protocol):
    """A scored point as both libraries return it."""

    @property
    def score(self) -> float: ...


class FilterParts(Protocol):
    """The library's filter constructors: all the filter building below needs."""

    def match(self, key: str, value: str) -> Native: ...

    def match_any(self, key: str, values: list[str]) -> Native: ...

    def filter(self, must: list[Native] | None = None, should: list[Native] | None = None) -> Native: ...

    def datetime_range(self, key: str, gte: str | None, lt: str | None) -> Native: ...

    def has_id(self, ids: list[str]) -> Native: ...


class Engine(FilterParts, Protocol):
    """One collection in one library; every method is a direct translation, with no schema of its own."""

    description: str

    @property
    def exists(self) -> bool: ...

    def create(self, spec: CollectionSpec) -> None: ...

    def upsert(self, points: list[Row]) -> None: ...

    def delete(self, where: Native) -> None: ...

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None: ...

    def set_payload_where(self, where: Native, payload: dict[str, Any]) -> None: ...

    def retrieve(self, point_id: str) -> Sequence[Stored]: ...

    def scroll(
        self, where: Native, offset: Any, limit: int, vectors: bool = False
    ) -> tuple[Sequence[Scrolled], Any]: ...

    def count(self, where: Native) -> int: ...

    def nearest(self, search: Nearest) -> Sequence[Found]: ...

    def flush(self) -> None: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...


def native_vector(vector: Vector, sparse_vector: Callable[..., S]) -> list[float] | S:
    """A dense vector as it is, a sparse one as the library's SparseVector (both libraries take the same arguments)."""
    if isinstance(vector, SparseVec):
        return sparse_vector(indices=vector.indices, values=vector.values)
    return vector


def build_filter(parts: FilterParts, flt: SearchFilter | None = None, **equal: str | None) -> Native | None:
    """Points whose keyword fields equal `equal` (None values left out), inside flt's path prefix and file types."""
    must = [parts.match(key, value) for key, value in equal.items() if value is not None]
    if flt and flt.path_prefix:
        prefix = flt.path_prefix.strip("/")
        # a prefix names a file (its source) or a folder (one of the chunk's dirs, which holds every ancestor)
        must.append(parts.filter(should=[parts.match("source", prefix), parts.match("dirs", prefix)]))
    if flt and flt.file_types:
        must.append(parts.match_any("file_type", [t.lower() for t in flt.file_types]))
    if flt and flt.doc_ids:
        must.append(parts.match_any("doc_id", list(flt.doc_ids)))
    if flt and (flt.ingested_from or flt.ingested_until):
        must.append(parts.datetime_range("ingested_at", flt.ingested_from, flt.ingested_until))
    return parts.filter(must=must) if must else None


class QdrantStore:
    """The VectorStore over an engine: what is stored, how it is filtered, and what a search returns."""

    def __init__(self, engine: Engine, layout: Layout | None = None) -> None:
        self.engine = engine
        self.description = engine.description
        self.layout = layout or Layout()  # for a collection this store creates; an existing one keeps its own

    @property
    def exists(self) -> bool:
        return self.engine.exists

    def ensure_collection(self, dimension: int, embedder: str, backend: str | None = None) -> None:
        """Create the collection with its meta record: the embedder (and how it ran) that its vectors come from."""
        if self.engine.exists:
            return
        self.engine.create(CollectionSpec(dimension, self.layout))
        meta = {"kind": KIND_META, "embedder": embedder, "dimension": dimension}
        if backend:
            meta["embed_backend"] = backend
        self.upsert([PointData(id=META_ID, payload=meta)])
        self.engine.flush()

    def collection_meta(self) -> dict[str, Any] | None:
        if not self.engine.exists:
            return None
        records = self.engine.retrieve(META_ID)
        return dict(records[0].payload or {}) if records else None

    def upsert(self, points: list[PointData]) -> None:
        if points:
            self.engine.upsert([(p.id, _vectors(p), p.payload) for p in points])

    def delete_document(self, doc_id: str) -> None:
        self.engine.delete(build_filter(self.engine, doc_id=doc_id))  # its chunks and its record alike

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        self.engine.set_payload(point_id, payload)

    def set_chunks_payload(self, doc_id: str, payload: dict[str, Any]) -> None:
        self.engine.set_payload_where(build_filter(self.engine, kind=KIND_CHUNK, doc_id=doc_id), payload)

    def _records(self, where: Native, vectors: bool = False) -> Iterator[Scrolled]:
        """Every point the filter matches, page by page."""
        offset = None
        while True:
            records, offset = self.engine.scroll(where, offset, SCROLL_PAGE, vectors=vectors)
            yield from records
            if offset is None:
                return

    def _scroll(self, where: Native) -> list[dict[str, Any]]:
        return [dict(r.payload or {}) for r in self._records(where)]

    def document_records(self, root: str | None = None) -> list[DocumentRecord]:
        if not self.engine.exists:
            return []
        records = self._scroll(build_filter(self.engine, kind=KIND_DOC, root=root))
        return [DocumentRecord.from_payload(p) for p in records]

    def chunks_of(self, doc_id: str) -> list[dict[str, Any]]:
        return self._scroll(build_filter(self.engine, kind=KIND_CHUNK, doc_id=doc_id))

    def chunk_vectors(self, doc_id: str) -> dict[str, list[float]]:
        """A document's chunks' dense vectors by point id, as stored (to compare two ingestions of one folder)."""
        where = build_filter(self.engine, kind=KIND_CHUNK, doc_id=doc_id)
        return {str(r.id): _dense_of(r.vector) for r in self._records(where, vectors=True)}

    def count_chunks(self) -> int:
        if not self.engine.exists:
            return 0
        return self.engine.count(build_filter(self.engine, kind=KIND_CHUNK))

    def search_dense(self, vector: list[float], limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        hits = _hits(self.engine.nearest(_dense(vector, limit, self._chunks(flt), self.layout.hnsw_ef)))
        for h in hits:
            h.dense_score = h.score
        return hits

    def search_sparse(self, vector: SparseVec, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        return _hits(self.engine.nearest(_sparse(vector, limit, self._chunks(flt))))

    def search_hybrid(
        self,
        dense: list[float],
        sparse: SparseVec,
        limit: int,
        flt: SearchFilter | None = None,
        sparse_weight: float = BM25_WEIGHT,
    ) -> list[Hit]:
        dense_hits = self.search_dense(dense, limit, flt)
        if not sparse.indices or sparse_weight == 0:  # no known word, or BM25 weighs nothing: dense alone
            return dense_hits
        points = self.engine.nearest(replace(_sparse(sparse, limit, self._chunks(flt)), with_vector=DENSE))
        sparse_hits = _hits(points)
        query = np.asarray(dense, dtype=np.float32)
        for hit, point in zip(sparse_hits, points, strict=True):
            hit.dense_score = _dense_score(query, point.vector)
        bm25 = {h.id: h.score for h in sparse_hits}
        bm25.update(self.bm25_scores([h.id for h in dense_hits if h.id not in bm25], sparse))
        return convex_fusion(dense_hits, sparse_hits, bm25, sparse_weight)[:limit]

    def bm25_scores(self, ids: list[str], sparse: SparseVec) -> dict[str, float]:
        """The BM25 score of each of these points for the query; a point with none of its words is absent (0)."""
        if not ids:
            return {}
        where = self.engine.filter(must=[self.engine.has_id(ids)])
        return {str(p.id): float(p.score) for p in self.engine.nearest(_sparse(sparse, len(ids), where))}

    def _chunks(self, flt: SearchFilter | None) -> Native:
        return build_filter(self.engine, flt, kind=KIND_CHUNK)

    def finish(self) -> None:
        if self.engine.exists:
            self.engine.flush()
            self.engine.optimize()
            self.engine.flush()  # optimizing rewrites segments: make the rewritten ones durable too

    def close(self) -> None:
        self.engine.close()


def _dense(vector: list[float], limit: int, where: Native | None, ef: int) -> Nearest:
    return Nearest(vector, DENSE, limit, where, ef=ef)


def _sparse(vector: SparseVec, limit: int, where: Native | None) -> Nearest:
    return Nearest(vector, SPARSE, limit, where)  # an inverted index: no HNSW beam to set


def _vectors(p: PointData) -> dict[str, Vector]:
    vectors: dict[str, Vector] = {}
    if p.dense is not None:
        vectors[DENSE] = p.dense
    if p.sparse is not None and p.sparse.indices:  # a text with no known word has no BM25 vector at all
        vectors[SPARSE] = p.sparse
    return vectors


def _hits(points: Sequence[Found]) -> list[Hit]:
    return [Hit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]


def convex_fusion(
    dense_hits: Sequence[Hit], sparse_hits: Sequence[Hit], bm25: Mapping[str, float], weight: float
) -> list[Hit]:
    """Score each hit of either list (1 - weight) * cosine + weight * BM25, both min-max scaled over those hits.

    Every hit needs both scores: `bm25` holds them for the dense hits too, so a passage the dense search ranks high
    is not sunk for lying outside BM25's own top list, as reciprocal rank fusion sank it (the reference pages' MRR@10
    0.292 under RRF, 0.322 this way; docs/benchmarks.md, "Hybrid search"). Each hit keeps its first list's object."""
    first: dict[str, Hit] = {}
    for hit in [*dense_hits, *sparse_hits]:
        first.setdefault(hit.id, hit)
    hits = list(first.values())
    cosine = _unit_range([h.dense_score or 0.0 for h in hits])
    lexical = _unit_range([bm25.get(h.id, 0.0) for h in hits])
    for hit, c, b in zip(hits, cosine, lexical, strict=True):
        hit.score = (1 - weight) * c + weight * b
    return sorted(hits, key=_fused_order)


def _unit_range(values: list[float]) -> list[float]:
    """Values scaled to [0, 1] by their least and greatest (all 0 when they are equal)."""
    low, high = min(values, default=0.0), max(values, default=0.0)
    return [(v - low) / (high - low) if high > low else 0.0 for v in values]


def _fused_order(hit: Hit) -> tuple[float, float, str]:
    """Fused score first; equal scores by dense similarity, then id.

    qdrant-edge returns tied points in no fixed order, which moved hybrid R@1 on the Python FAQ between 0.915 and
    0.926 from run to run on the same index.
    """
    return (-hit.score, -(hit.dense_score or 0.0), hit.id)


def _dense_of(vector: object) -> list[float]:
    """The dense vector of a point's returned vectors (empty if it was not returned)."""
    value = vector.get(DENSE) if isinstance(vector, dict) else None
    return [float(x) for x in value or []]


def _dense_score(query: np.ndarray, vector: object) -> float | None:
    """The cosine of the query with a returned dense vector (a BM25-only hit has no other)."""
    value = _dense_of(vector)
    return float(np.dot(query, np.asarray(value, dtype=np.float32))) if value else None
