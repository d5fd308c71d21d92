"""Retrieval speed and HNSW recall on the embedded store, and the embedded LLM's first-token and total time.

    python -m benchmarks.retrieval_bench [--sizes 10000 100000] [--queries 200] [--llm]

Points are synthetic: by default random unit vectors with BM25 vectors of random vocabulary text, the worst case
for HNSW (no cluster structure at all). With `--like DATA_DIR COLLECTION QA` they are drawn from a real collection
instead: its chunks as they are, then noisy copies of them (each real vector plus Gaussian noise, renormalised to a
cosine of about 0.8 with its original, with the original's text) until the size is reached, queried with the real
questions of QA. That keeps the shape of real embeddings at sizes no corpus here reaches in reasonable time.
Latency excludes the query embedding, which is timed separately on real text. Recall@10 compares the HNSW dense
search with exact search over the same shard.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import qdrant_edge as qe

import rag  # noqa: F401  (offline environment)
from rag.sparse import bm25_document, bm25_query
from rag.store.base import DENSE, PointData
from rag.store.edge import EdgeStore, edge_filter
from rag.store.qdrant import HNSW_EF, HNSW_EF_CONSTRUCT, HNSW_M, Layout

WORDS = [f"w{i}" for i in range(20000)]
DIM = 384
BATCH = 2000


NOISE_SIGMA = (
    0.038  # per dimension: a copy's cosine with its original is about 1 / sqrt(1 + 384 * sigma^2) = 0.8
)


@dataclass
class Queries:
    vectors: np.ndarray
    texts: list[str]


class RandomPoints:
    """Unit vectors with no structure, and random-vocabulary texts."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def batch(self, start: int, count: int) -> tuple[np.ndarray, list[str]]:
        vectors = unit(self.rng.standard_normal((count, DIM)).astype(np.float32))
        return vectors, [" ".join(self.rng.choice(WORDS, 60)) for _ in range(count)]

    def queries(self, count: int) -> Queries:
        vectors = unit(self.rng.standard_normal((count, DIM)).astype(np.float32))
        return Queries(vectors, [" ".join(self.rng.choice(WORDS, 8)) for _ in range(count)])


class PointsLike:
    """A real collection's chunks, then noisy copies of them; queried with real questions."""

    def __init__(
        self, vectors: np.ndarray, texts: list[str], questions: Queries, rng: np.random.Generator
    ) -> None:
        self.vectors, self.texts, self.questions, self.rng = vectors, texts, questions, rng

    def batch(self, start: int, count: int) -> tuple[np.ndarray, list[str]]:
        rows = np.arange(start, start + count) % len(self.vectors)
        vectors = self.vectors[rows]
        if start + count > len(self.vectors):
            copies = np.arange(start, start + count) >= len(self.vectors)
            noise = self.rng.standard_normal((int(copies.sum()), DIM)).astype(np.float32) * NOISE_SIGMA
            vectors = vectors.copy()
            vectors[copies] = unit(vectors[copies] + noise)
        return vectors, [self.texts[row] for row in rows]

    def queries(self, count: int) -> Queries:
        return Queries(self.questions.vectors[:count], self.questions.texts[:count])


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


LAYOUTS = {
    "ram": Layout(),
    "ram+int8": Layout(int8=True),
    "disk": Layout(on_disk=True),
    "disk+int8": Layout(True, True),
}


def build(
    folder: Path, size: int, source: RandomPoints | PointsLike, layout: Layout | None = None
) -> EdgeStore:
    store = EdgeStore(folder, layout)
    store.ensure_collection(DIM, "synthetic")
    for start in range(0, size, BATCH):
        vectors, texts = source.batch(start, min(BATCH, size - start))
        points = [
            PointData(
                str(uuid.uuid4()),
                {"kind": "chunk", "doc_id": "d", "source": "s", "text": text},
                vector.tolist(),
                bm25_document(text),
            )
            for vector, text in zip(vectors, texts, strict=True)
        ]
        store.upsert(points)
    started = time.perf_counter()
    store.finish()
    print(f"  {size} points: HNSW built in {time.perf_counter() - started:.1f} s")
    return store


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def dense_vs_exact(store: EdgeStore, vector: list[float]) -> tuple[float, float]:
    """The HNSW dense search's time in ms, and its recall@10 against exact search."""
    started = time.perf_counter()
    approx = store.search_dense(vector, 10)
    ms = (time.perf_counter() - started) * 1000
    exact = store.shard.query(
        qe.QueryRequest(
            limit=10,
            query=qe.Query.Nearest(vector, using=DENSE),
            # the original vectors, all of them: not the int8 copies a quantized collection searches first
            params=qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True)),
        )
    )
    return ms, len({h.id for h in approx} & {str(p.id) for p in exact}) / 10


def measure(store: EdgeStore, queries: Queries) -> dict[str, float]:
    hybrid_ms, dense_ms, recalls = [], [], []
    for row, text in zip(queries.vectors, queries.texts, strict=True):
        vector = row.tolist()
        started = time.perf_counter()
        store.search_hybrid(vector, bm25_query(text), 30)
        hybrid_ms.append((time.perf_counter() - started) * 1000)
        ms, recall = dense_vs_exact(store, vector)
        dense_ms.append(ms)
        recalls.append(recall)
    return {
        "hybrid_p50_ms": percentile(hybrid_ms, 50),
        "hybrid_p95_ms": percentile(hybrid_ms, 95),
        "dense_p50_ms": percentile(dense_ms, 50),
        "hnsw_recall@10": statistics.mean(recalls),
    }


def open_real(data_dir: Path, collection: str) -> EdgeStore:
    from rag.config import Settings
    from rag.store import open_store

    store = open_store(Settings(data_dir=data_dir, collection=collection))
    assert isinstance(store, EdgeStore)
    return store


def real_questions(data_dir: Path, collection: str, qa: Path, limit: int | None = None) -> Queries:
    """The first `limit` questions of a QA file (JSON lines with a "question"), embedded by the settings' embedder."""
    import json

    from rag.config import Settings
    from rag.embedder import embedder_from_settings

    embedder = embedder_from_settings(Settings(data_dir=data_dir, collection=collection))
    texts = [json.loads(line)["question"] for line in qa.read_text().splitlines() if line.strip()][:limit]
    return Queries(embedder.embed(texts), texts)


def points_like(data_dir: Path, collection: str, qa: Path, rng: np.random.Generator) -> PointsLike:
    store = open_real(data_dir, collection)
    vectors, texts = [], []
    try:
        offset = None
        while True:
            records, offset = store.shard.scroll(
                qe.ScrollRequest(
                    offset=offset, limit=1000, filter=edge_filter(None), with_payload=True, with_vector=True
                )
            )
            for record in records:
                assert isinstance(record.vector, dict)
                vectors.append(record.vector[DENSE])
                texts.append(str((record.payload or {}).get("text", "")))
            if offset is None:
                break
    finally:
        store.close()
    order = rng.permutation(len(vectors))  # copies of every part of the corpus, whatever the size
    base = np.array(vectors, dtype=np.float32)[order]
    return PointsLike(base, [texts[i] for i in order], real_questions(data_dir, collection, qa), rng)


def real_recall(data_dir: Path, collection: str, qa: Path, limit: int = 100) -> dict[str, float]:
    """HNSW recall@10 and dense latency on a real collection, with real questions (e.g. the Python FAQ)."""
    questions = real_questions(data_dir, collection, qa, limit)
    store = open_real(data_dir, collection)
    recalls, dense_ms = [], []
    try:
        for row in questions.vectors:
            ms, recall = dense_vs_exact(store, row.tolist())
            dense_ms.append(ms)
            recalls.append(recall)
        points = store.count_chunks()
    finally:
        store.close()
    return {
        "points": points,
        "hnsw_recall@10": statistics.mean(recalls),
        "dense_p50_ms": percentile(dense_ms, 50),
    }


def embed_query_ms() -> float:
    from rag.embedder import get_embedder

    embedder = get_embedder()
    embedder.embed_query("warm up")
    runs = []
    for _ in range(20):
        started = time.perf_counter()
        embedder.embed_query("How do I remove a file or a directory in Python?")
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def llm_times(runs: int = 5) -> tuple[float, float]:
    from rag.config import Settings
    from rag.llm import open_llm

    llm = open_llm(Settings())
    context = "\n\n".join(f"[{i}] A passage about topic {i}. " * 12 for i in range(1, 6))
    messages = [
        {"role": "system", "content": "Answer from the passages; cite them as [n]."},
        {"role": "user", "content": f"<context>\n{context}\n</context>\n\nQuestion: What is topic 3 about?"},
    ]
    firsts, totals = [], []
    for _ in range(runs):
        started = time.perf_counter()
        first = None
        for _piece in llm.stream(messages, 128):
            first = first or time.perf_counter()
        totals.append((time.perf_counter() - started) * 1000)
        firsts.append(((first or time.perf_counter()) - started) * 1000)
    return statistics.median(firsts), statistics.median(totals)


def serve(folder: Path, queries: Path, ef: int) -> None:
    """Stage run in a fresh process: open a built collection and search it, so the RSS measured is a serving
    process's (the builder's memory is not in it). Prints one JSON line."""
    import json
    import resource

    saved = np.load(queries)
    asked = Queries(saved["vectors"], [str(t) for t in saved["texts"]])
    store = EdgeStore(folder, Layout(hnsw_ef=ef))  # the beam this run measures (the graph is the built one's)
    try:
        for row, text in zip(asked.vectors, asked.texts, strict=True):  # serving: hybrid searches only
            store.search_hybrid(row.tolist(), bm25_query(text), 30)
        serving = rss_mb()
        result = measure(store, asked)  # then the exact searches, which read every vector
    finally:
        store.close()
    result |= {f"serving_{k}": v for k, v in serving.items()}
    result["peak_rss_mb_with_exact"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def rss_mb() -> dict[str, float]:
    """The process's resident memory now: all of it, and its anonymous (heap) and file-mapped parts."""
    fields = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            found[fields[key]] = int(value.split()[0]) / 1024
    return found


def measure_apart(folder: Path, queries: Queries, ef: int) -> dict[str, float]:
    import json
    import subprocess
    import sys

    saved = folder.parent / "queries.npz"
    np.savez(saved, vectors=queries.vectors, texts=np.array(queries.texts))
    command = [
        sys.executable,
        "-m",
        "benchmarks.retrieval_bench",
        "--serve",
        str(folder),
        str(saved),
        str(ef),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report(size: int, layout: str, ef: int, built_s: float, result: dict[str, float]) -> None:
    verdict = "PASS" if result["hybrid_p50_ms"] <= 15 and result["hnsw_recall@10"] >= 0.95 else "FAIL"
    print(
        f"  {size:>7} points, {layout}, ef {ef}: hybrid p50 {result['hybrid_p50_ms']:.2f} ms, "
        f"p95 {result['hybrid_p95_ms']:.2f} ms; dense p50 {result['dense_p50_ms']:.2f} ms; "
        f"HNSW recall@10 {result['hnsw_recall@10']:.3f}; serving RSS {result['serving_rss_mb']:.0f} MB "
        f"(anon {result['serving_anon_mb']:.0f}, files {result['serving_file_mb']:.0f}); "
        f"built in {built_s:.0f} s  (target p50 <= 15 ms, recall >= 0.95: {verdict})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--llm", action="store_true", help="also time the embedded LLM (first token, total)")
    parser.add_argument(
        "--real", nargs=3, metavar=("DATA_DIR", "COLLECTION", "QA"), help="recall on a real collection"
    )
    parser.add_argument(
        "--like",
        nargs=3,
        metavar=("DATA_DIR", "COLLECTION", "QA"),
        help="synthetic points shaped like a collection",
    )
    parser.add_argument(
        "--layouts",
        nargs="*",
        choices=sorted(LAYOUTS),
        default=["ram"],
        help="collection layouts to compare (int8: quantized copies in RAM, rescored; disk: vectors memory-mapped)",
    )
    parser.add_argument(
        "--efs", type=int, nargs="*", default=[HNSW_EF], help="HNSW search beams to measure on each index"
    )
    parser.add_argument(
        "--graph",
        type=int,
        nargs=2,
        metavar=("M", "EF_CONSTRUCT"),
        help=f"HNSW links per node and build beam of the indexes built (default {HNSW_M} {HNSW_EF_CONSTRUCT})",
    )
    parser.add_argument("--serve", nargs=3, metavar=("FOLDER", "QUERIES", "EF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), int(args.serve[2]))
        return
    rng = np.random.default_rng(0)
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {platform.python_version()}")
    graph = {"hnsw_m": args.graph[0], "hnsw_ef_construct": args.graph[1]} if args.graph else {}
    if args.graph:
        print(f"HNSW graph: m {args.graph[0]}, ef_construct {args.graph[1]}")
    if args.real:
        real = real_recall(Path(args.real[0]), args.real[1], Path(args.real[2]))
        print(
            f"real collection, {real['points']} chunks: HNSW recall@10 {real['hnsw_recall@10']:.3f}, dense p50 {real['dense_p50_ms']:.2f} ms"
        )
    print(f"query embedding (MiniLM, one question): {embed_query_ms():.1f} ms median")
    source: RandomPoints | PointsLike = RandomPoints(rng)
    if args.like:
        source = points_like(Path(args.like[0]), args.like[1], Path(args.like[2]), rng)
        print(
            f"points like {args.like[1]}: {len(source.vectors)} real chunks, then noisy copies; real questions"
        )
    else:
        print("random points (no structure: the worst case for HNSW)")
    for size in args.sizes:
        queries = source.queries(args.queries)
        for name in args.layouts:
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                build(Path(tmp) / "c", size, source, replace(LAYOUTS[name], **graph)).close()
                built_s = time.perf_counter() - started
                for ef in args.efs:
                    report(size, name, ef, built_s, measure_apart(Path(tmp) / "c", queries, ef))
    if args.llm:
        first, total = llm_times()
        print(
            f"embedded LLM: first token {first:.0f} ms, total {total:.0f} ms (128 tokens max; target first <= 1500 ms)"
        )


if __name__ == "__main__":
    main()
