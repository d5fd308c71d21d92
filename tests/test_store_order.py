"""Hybrid results come in one fixed order (the engine's order for tied RRF scores is not), weighted as set."""

from __future__ import annotations

import pytest

from rag.store.base import Hit
from rag.store.qdrant import _fused_order, weighted_rrf


def test_tied_fused_scores_are_ordered_by_dense_similarity_then_id() -> None:
    hits = [
        Hit("b", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("a", 1 / 61 + 1 / 62, {}, dense_score=0.40),
        Hit("c", 1 / 61 + 1 / 62, {}, dense_score=0.70),
        Hit("d", 1 / 61, {}, dense_score=0.99),
        Hit("e", 1 / 60 + 1 / 61, {}, dense_score=None),
    ]
    assert [h.id for h in sorted(hits, key=_fused_order)] == ["e", "c", "a", "b", "d"]


def test_the_bm25_weight_scales_its_list_in_the_fusion() -> None:
    def lists() -> tuple[list[Hit], list[Hit]]:
        dense = [Hit("a", 0.9, {}, dense_score=0.9), Hit("b", 0.8, {}, dense_score=0.8)]
        return dense, [Hit("c", 7.0, {}, dense_score=0.1), Hit("a", 5.0, {}, dense_score=0.9)]

    equal = weighted_rrf(list(lists()), [1.0, 1.0])
    assert [h.id for h in equal] == ["a", "c", "b"]  # c, BM25's first, beats b, dense's second
    light = weighted_rrf(list(lists()), [1.0, 0.25])
    assert [h.id for h in light] == ["a", "b", "c"]
    assert light[0].score == pytest.approx(1 / 61 + 0.25 / 62) and light[2].score == pytest.approx(0.25 / 61)
    assert [h.dense_score for h in light] == [0.9, 0.8, 0.1]
