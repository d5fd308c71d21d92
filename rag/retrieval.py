"""First stage: embed the query, search dense + BM25 in Qdrant, fuse their scores (rag/store/qdrant.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from rag.config import BM25_WEIGHT
from rag.embedder import TextEmbedder
from rag.sparse import bm25_query
from rag.store import Hit, SearchFilter, VectorStore


class Mode(StrEnum):
    DENSE = "dense"
    SPARSE = "bm25"
    HYBRID = "hybrid"


@dataclass
class Retrieved:
    hits: list[Hit]
    embed_ms: float
    search_ms: float


class Retriever:
    def __init__(self, store: VectorStore, embedder: TextEmbedder, bm25_weight: float = BM25_WEIGHT) -> None:
        """bm25_weight: BM25's share of the hybrid score (the dense cosine's is the rest)."""
        self.store = store
        self.embedder = embedder
        self.bm25_weight = bm25_weight

    def retrieve(
        self, query: str, limit: int, mode: Mode = Mode.HYBRID, flt: SearchFilter | None = None
    ) -> Retrieved:
        started = time.perf_counter()
        dense = self.embedder.embed_query(query) if mode != Mode.SPARSE else []
        embedded = time.perf_counter()
        if mode == Mode.DENSE:
            hits = self.store.search_dense(dense, limit, flt)
        elif mode == Mode.SPARSE:
            hits = self.store.search_sparse(bm25_query(query), limit, flt)
        else:
            hits = self.store.search_hybrid(dense, bm25_query(query), limit, flt, self.bm25_weight)
        done = time.perf_counter()
        return Retrieved(hits, (embedded - started) * 1000, (done - embedded) * 1000)
