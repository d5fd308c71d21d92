"""BM25 sparse vectors from qdrant-edge's built-in model, used for both backends so they match.

Documents get term-frequency weights; the collection's IDF modifier supplies the inverse document frequency at
query time, on the embedded engine and on a Qdrant server alike.
"""

from __future__ import annotations

from functools import lru_cache

import qdrant_edge as qe

from rag.store.base import SparseVec


@lru_cache(maxsize=1)
def _model() -> qe.Bm25:
    return qe.Bm25(qe.Bm25Config(language="english", avg_len=100.0))


def bm25_document(text: str) -> SparseVec:
    vec = _model().embed_document(text)
    return SparseVec(indices=list(vec.indices), values=list(vec.values))


def bm25_query(text: str) -> SparseVec:
    vec = _model().embed_query(text)
    return SparseVec(indices=list(vec.indices), values=list(vec.values))
