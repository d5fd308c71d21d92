"""Embedding backends side by side: chunks/s and dense retrieval quality of torch (bf16 where native), ONNX fp32
and ONNX int8, on the real chunks of the Python docs and the Debian FAQ.

    python -m benchmarks.embed_bench [--speed-chunks 2000] [--out FILE.json]

Each corpus is ingested once with the torch backend (as every collection before 2026-12-04 was); its chunks'
passages are then embedded again by the other backends. Speed: the same passages, each backend after a warm-up, in
one run. Quality: exact (brute-force) dense search over each set of vectors with the FAQ questions embedded by
each backend, document-level MRR@10 and recall@5, including the mixed case that decides whether an existing
collection may be searched with another backend's queries (torch passages, int8 questions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from evals import metrics
from evals.fetch_corpora import debian_faq_dir, python_docs_dir
from evals.qa import load_qa
from rag.config import Settings
from rag.embedder import get_embedder
from rag.store.base import DENSE
from rag.store.edge import EdgeStore, edge_filter

BACKENDS = ("torch", "onnx", "onnx-int8")
# ONNX fp32 gives torch fp32's vectors to cosine 0.99999 (tests/test_embed_backends.py) at half int8's speed:
# timed, not re-embedding whole corpora.
QUALITY_BACKENDS = ("torch", "onnx-int8")
QA = Path(__file__).resolve().parents[1] / "evals" / "data"
TOLERANCE = 0.005  # the bound on MRR@10 and recall@5 drift


@dataclass
class Corpus:
    name: str
    root: Path
    qa: Path
    exclude: list[str]


@dataclass
class Chunks:
    passages: list[str]
    sources: list[str]
    vectors: np.ndarray  # as ingested, by torch


def corpora() -> list[Corpus]:
    return [
        Corpus(
            "python-docs", python_docs_dir(), QA / "python_faq.jsonl", ["_sources/*", "_downloads/*", "*.txt"]
        ),
        Corpus("debian-faq", debian_faq_dir(), QA / "debian_faq.jsonl", ["*.pdf", "*.txt", "images/*"]),
    ]


def ingest(corpus: Corpus, data: Path) -> tuple[Chunks, float]:
    """The corpus ingested with torch (the default precision); its chunks read back, and the wall time."""
    from ingest.job import ingest_folder

    settings = Settings(
        data_dir=data, collection="bench", embed_backend="torch", ingest_exclude=corpus.exclude
    )
    started = time.perf_counter()
    summary = ingest_folder(settings, corpus.root, progress=False, on_file=_every_100)
    seconds = time.perf_counter() - started
    print(f"{corpus.name}: {summary.chunks} chunks ingested with torch in {seconds:.1f} s", flush=True)
    return read_chunks(settings), seconds


def _every_100(done: int, total: int) -> None:
    if done % 100 == 0 or done == total:
        print(f"  {done}/{total} files ingested", flush=True)


def read_chunks(settings: Settings) -> Chunks:
    from rag.store import open_store
    from rag.store.payload import passage_text

    store = open_store(settings)
    assert isinstance(store, EdgeStore)
    passages, sources, vectors = [], [], []
    try:
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=1000, filter=edge_filter(None), with_payload=True, with_vector=True
            )
            records, offset = store.shard.scroll(request)
            for record in records:
                payload = record.payload or {}
                if "chunk_index" not in payload:  # document records and the meta record
                    continue
                assert isinstance(record.vector, dict)
                passages.append(passage_text(payload.get("title"), str(payload["text"])))
                sources.append(str(payload["source"]))
                vectors.append(record.vector[DENSE])
            if offset is None:
                break
    finally:
        store.close()
    return Chunks(passages, sources, np.asarray(vectors, dtype=np.float32))


class Progress:
    """A line every 2,000 passages: a corpus takes minutes to embed."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.shown = label, total, 0, 0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.done - self.shown >= 2000 or self.done == self.total:
            self.shown = self.done
            print(f"  {self.label}: {self.done}/{self.total} passages embedded", flush=True)


def embedder(backend: str, cache: Path) -> Any:
    return get_embedder(backend=backend, cache=cache)


def speed(passages: list[str], cache: Path) -> dict[str, dict[str, float]]:
    """chunks/s of each backend on the same passages, after a warm-up batch."""
    rows: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        model = embedder(backend, cache)
        model.embed(passages[:64])
        started = time.perf_counter()
        model.embed(passages, on_batch=lambda n: None)
        seconds = time.perf_counter() - started
        rows[backend] = {
            "chunks": len(passages),
            "seconds": round(seconds, 2),
            "chunks_per_s": len(passages) / seconds,
        }
        print(f"  {backend}: {rows[backend]['chunks_per_s']:.1f} chunks/s", flush=True)
    base = rows["torch"]["chunks_per_s"]
    for row in rows.values():
        row["vs_torch"] = round(row["chunks_per_s"] / base, 3)
    return rows


def scores(
    vectors: np.ndarray, sources: list[str], questions: np.ndarray, gold: list[set[str]]
) -> dict[str, float]:
    """Document-level MRR@10 and recall@5 of exact dense search."""
    sims = questions @ vectors.T
    mrr, recall = [], []
    for row, wanted in zip(sims, gold, strict=True):
        top = np.argsort(-row)[:50]
        ranked = metrics.doc_keys((sources[i], None) for i in top)
        mrr.append(metrics.mrr_at_k(ranked, wanted, 10))
        recall.append(metrics.recall_at_k(ranked, wanted, 5))
    return {"mrr@10": round(float(np.mean(mrr)), 4), "recall@5": round(float(np.mean(recall)), 4)}


def quality(corpus: Corpus, chunks: Chunks, cache: Path) -> dict[str, Any]:
    items = [item for item in load_qa(corpus.qa) if item.answerable and item.sources]
    gold = [item.gold_docs() for item in items]
    questions = [item.question for item in items]
    passages = {"torch": chunks.vectors}
    asked = {}
    for backend in QUALITY_BACKENDS:
        model = embedder(backend, cache)
        asked[backend] = model.embed(questions)
        if backend != "torch":
            passages[backend] = model.embed(chunks.passages, on_batch=Progress(backend, len(chunks.passages)))
    rows: dict[str, Any] = {"questions": len(items), "chunks": len(chunks.passages)}
    for docs_by in QUALITY_BACKENDS:
        for asked_by in QUALITY_BACKENDS:
            if docs_by == asked_by or docs_by == "torch":
                rows[f"{docs_by} passages, {asked_by} questions"] = scores(
                    passages[docs_by], chunks.sources, asked[asked_by], gold
                )
    print(json.dumps(rows, indent=1), flush=True)
    return rows


def within_tolerance(rows: dict[str, Any]) -> dict[str, bool]:
    """Each configuration against torch's own: both metrics within TOLERANCE."""
    base = rows["torch passages, torch questions"]
    verdict = {}
    for key, row in rows.items():
        if isinstance(row, dict) and key != "torch passages, torch questions":
            verdict[key] = all(abs(row[m] - base[m]) <= TOLERANCE for m in ("mrr@10", "recall@5"))
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed-chunks", type=int, default=2000, help="passages timed per backend")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}, {len(os.sched_getaffinity(0))} cores",
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "models"
        for corpus in corpora():
            chunks, seconds = ingest(corpus, Path(tmp) / corpus.name)
            entry: dict[str, Any] = {"torch_ingest_s": round(seconds, 1)}
            if corpus.name == "python-docs":
                rng = np.random.default_rng(0)
                sample = [
                    chunks.passages[i] for i in rng.permutation(len(chunks.passages))[: args.speed_chunks]
                ]
                print("speed:", flush=True)
                entry["speed"] = speed(sample, cache)
            entry["quality"] = quality(corpus, chunks, cache)
            entry["within_tolerance"] = within_tolerance(entry["quality"])
            result[corpus.name] = entry
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
