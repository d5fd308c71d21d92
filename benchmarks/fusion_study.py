"""How much the BM25 side should weigh in the hybrid first stage: weighted RRF over the same dense and BM25 lists.

    python -m benchmarks.fusion_study --data-dir DATA --collection NAME --qa evals/data/python_faq.jsonl [--qa ...]

For each answerable question of each QA file, the dense and the BM25 search each return their best LIMIT chunks
once; every weight of the BM25 list (the dense list weighs 1) is then fused from those lists as the store fuses
them (`weighted_rrf`: a hit at rank r of a list of weight w adds w / (60 + r); equal scores by dense cosine), and
scored as `rag eval` scores retrieval (document level). A BM25 weight of 1 fuses the lists equally, 0 is dense
alone; RAG_BM25_WEIGHT is the store's. Prints one markdown table per QA file.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import rag  # noqa: F401  (offline environment)
from evals import metrics
from evals.qa import QAItem, load_qa
from rag.collection import Collection
from rag.config import Settings
from rag.sparse import bm25_query
from rag.store import Hit
from rag.store.qdrant import weighted_rrf

LIMIT = 30  # chunks per list, as many as RAG_TOP_K fuses
WEIGHTS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.1, 0.0)


def fused(dense: list[Hit], sparse: list[Hit], weight: float) -> list[Hit]:
    """The two lists fused as the store fuses them (the dense list weighs 1), each hit copied: fusion sets scores."""
    return weighted_rrf([[replace(h) for h in dense], [replace(h) for h in sparse]], [1.0, weight])


def scores(item: QAItem, ranked: list[Hit]) -> dict[str, float]:
    docs = metrics.doc_keys((h.chunk.source, h.chunk.page) for h in ranked)
    gold = item.gold_docs()
    return {
        "R@1": metrics.recall_at_k(docs, gold, 1),
        "R@5": metrics.recall_at_k(docs, gold, 5),
        "MRR@10": metrics.mrr_at_k(docs, gold, 10),
    }


def study(collection: Collection, items: list[QAItem]) -> dict[float, dict[str, float]]:
    totals = {w: {"R@1": 0.0, "R@5": 0.0, "MRR@10": 0.0} for w in WEIGHTS}
    answerable = [i for i in items if i.answerable and i.gold_docs()]
    for item in answerable:
        vector = collection.embedder.embed_query(item.question)
        dense = collection.store.search_dense(vector, LIMIT)
        sparse = collection.store.search_sparse(bm25_query(item.question), LIMIT)
        for w in WEIGHTS:
            for key, value in scores(item, fused(dense, sparse, w)).items():
                totals[w][key] += value
    return {w: {k: v / max(1, len(answerable)) for k, v in row.items()} for w, row in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--collection", required=True)
    parser.add_argument("--qa", type=Path, action="append", required=True)
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir, collection=args.collection)
    print(f"{datetime.now(UTC).isoformat(timespec='minutes')}, {platform.machine()}, {args.collection}")
    with Collection(settings) as collection:
        for qa in args.qa:
            rows = study(collection, load_qa(qa))
            print(f"\n{qa.name}\n\n| BM25 weight | R@1 | R@5 | MRR@10 |\n| --- | --- | --- | --- |")
            for w, row in rows.items():
                print(f"| {w} | {row['R@1']:.3f} | {row['R@5']:.3f} | {row['MRR@10']:.3f} |")


if __name__ == "__main__":
    main()
