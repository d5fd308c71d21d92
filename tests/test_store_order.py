"""Hybrid results come in one fixed order: the engine's order for tied RRF scores is not."""

from __future__ import annotations

from rag.store.base import Hit
from rag.store.qdrant import _fused_order


def test_tied_fused_scores_are_ordered_by_dense_similarity_then_id() -> None:
    hits = [
        Hit("b", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("a", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("c", 1 / 61 + 1 / 62, {}, dense_score=0.70),
        Hit("d", 1 / 61, {}, dense_score=0.99),
        Hit("e", 1 / 60 + 1 / 61, {}, dense_score=None),
    ]
    assert [h.id for h in sorted(hits, key=_fused_order)] == ["e", "c", "a", "b", "d"]
