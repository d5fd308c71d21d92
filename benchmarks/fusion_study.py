"""How the hybrid first stage should fuse dense and BM25: the store's score fusion at several BM25 weights, beside
the weighted reciprocal rank fusion it replaced, on the same collection and questions.

    python -m benchmarks.fusion_study --data-dir DATA --collection NAME --qa evals/data/python_faq.jsonl [--qa ...]

For each answerable question of each QA file: dense alone; `search_hybrid` (each hit scored (1 - w) * cosine +
w * BM25, both min-max scaled over the two lists' hits; RAG_BM25_WEIGHT is w) at every weight below; and weighted RRF
as the store fused until 2026-12-05 (a hit at rank r of a list of weight w adds w / (60 + r); the dense list weighs
1). Each is scored as `rag eval` scores retrieval (document MRR@10), with the paired bootstrap 95% interval of its
difference from dense alone. Prints one markdown table with a column per QA file.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import rag  # noqa: F401  (offline environment)
from evals import metrics
from evals.qa import QAItem, load_qa
from rag.collection import Collection
from rag.config import Settings
from rag.sparse import bm25_query
from rag.store import Hit
from rag.store.qdrant import _fused_order

LIMIT = 30  # chunks per list, as many as RAG_TOP_K fuses
WEIGHTS = (0.5, 0.35, 0.25, 0.2, 0.15, 0.1)
RRF_K = 60
RESAMPLES = 2000

Search = Callable[[Collection, str], list[Hit]]


def weighted_rrf(dense: list[Hit], sparse: list[Hit], weight: float) -> list[Hit]:
    """The fusion the store used until 2026-12-05, ties by dense cosine (BM25-only hits have none here)."""
    score: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for w, hits in ((1.0, dense), (weight, sparse)):
        for rank, hit in enumerate(hits, 1):
            score[hit.id] = score.get(hit.id, 0.0) + w / (RRF_K + rank)
            first.setdefault(hit.id, hit)
    for hit_id, hit in first.items():
        hit.score = score[hit_id]
    return sorted(first.values(), key=_fused_order)


def searches() -> dict[str, Search]:
    def dense(c: Collection, q: str) -> list[Hit]:
        return c.store.search_dense(c.embedder.embed_query(q), LIMIT)

    def rrf(c: Collection, q: str) -> list[Hit]:
        return weighted_rrf(dense(c, q), c.store.search_sparse(bm25_query(q), LIMIT), 0.25)

    def fused(weight: float) -> Search:
        return lambda c, q: c.store.search_hybrid(
            c.embedder.embed_query(q), bm25_query(q), LIMIT, None, weight
        )

    return {"dense alone": dense, "RRF, BM25 0.25 (until 2026-12-05)": rrf} | {
        f"scores, BM25 {w}": fused(w) for w in WEIGHTS
    }


def mrr_per_question(collection: Collection, items: list[QAItem], search: Search) -> np.ndarray:
    return np.array(
        [
            metrics.mrr_at_k(
                metrics.doc_keys((h.chunk.source, h.chunk.page) for h in search(collection, i.question)),
                i.gold_docs(),
                10,
            )
            for i in items
        ]
    )


def interval(diff: np.ndarray) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = [rng.choice(diff, len(diff)).mean() for _ in range(RESAMPLES)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--qa", type=Path, action="append", required=True)
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, collection=args.collection)
    print(f"{datetime.now(UTC).isoformat(timespec='minutes')}, {platform.machine()}, {args.collection}")
    sets = {qa.name: [i for i in load_qa(qa) if i.answerable and i.gold_docs()] for qa in args.qa}
    print("\n| fusion | " + " | ".join(f"{name} ({len(items)})" for name, items in sets.items()) + " |")
    print("| --- |" + " --- |" * len(sets))
    with Collection(settings) as collection:
        scored = {
            n: {s: mrr_per_question(collection, items, f) for s, f in searches().items()}
            for n, items in sets.items()
        }
    for search in searches():
        cells = []
        for rows in scored.values():
            low, high = interval(rows[search] - rows["dense alone"])
            cells.append(f"{rows[search].mean():.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"| {search} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
