"""Hybrid results come in one fixed order (the engine's order for tied scores is not), BM25 weighing as set."""

from __future__ import annotations

import pytest

from rag.store.base import Hit
from rag.store.qdrant import _fused_order, convex_fusion


def test_tied_fused_scores_are_ordered_by_dense_similarity_then_id() -> None:
    hits = [
        Hit("b", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("a", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("c", 1 / 61 + 1 / 62, {}, dense_score=0.70),
        Hit("d", 1 / 61, {}, dense_score=0.99),
        Hit("e", 1 / 60 + 1 / 61, {}, dense_score=None),
    ]
    assert [h.id for h in sorted(hits, key=_fused_order)] == ["e", "c", "a", "b", "d"]


def test_the_bm25_weight_is_its_share_of_the_scaled_scores() -> None:
    def lists() -> tuple[list[Hit], list[Hit]]:
        dense = [Hit("a", 0.9, {}, dense_score=0.9), Hit("b", 0.8, {}, dense_score=0.8)]
        return dense, [Hit("c", 7.0, {}, dense_score=0.1), Hit("a", 5.0, {}, dense_score=0.9)]

    bm25 = {"c": 7.0, "a": 5.0, "b": 6.0}  # b is not in BM25's own list, yet has its score
    equal = convex_fusion(*lists(), bm25, 0.5)
    # cosine scaled over a, b, c: 1, 0.875, 0; BM25: 0, 0.5, 1
    assert [h.id for h in equal] == ["b", "a", "c"]  # a and c tie at 0.5: the closer by cosine first
    assert [h.score for h in equal] == pytest.approx([0.6875, 0.5, 0.5])
    unscored_b = convex_fusion(*lists(), {"c": 7.0, "a": 5.0}, 0.5)
    assert [h.id for h in unscored_b] == ["a", "c", "b"]
    light = convex_fusion(*lists(), bm25, 0.1)
    assert [h.id for h in light] == ["a", "b", "c"]
    assert [h.dense_score for h in light] == [0.9, 0.8, 0.1]
    assert [h.id for h in convex_fusion(*lists(), bm25, 0.0)] == ["a", "b", "c"]  # dense alone


def test_equal_scores_scale_to_zero_not_to_a_division_by_zero() -> None:
    hits = [Hit("a", 0.5, {}, dense_score=0.5), Hit("b", 0.5, {}, dense_score=0.5)]
    fused = convex_fusion(hits, [], {}, 0.2)
    assert [(h.id, h.score) for h in fused] == [("a", 0.0), ("b", 0.0)]
