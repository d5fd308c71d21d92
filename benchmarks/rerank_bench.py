"""Cross-encoder speed: score 20 (query, chunk) pairs, per backend and max length, side by side in one run.

    python -m benchmarks.rerank_bench [--model NAME_OR_FOLDER | --layers 6] [--candidates 20] [--repeats 30]

Target (issue 25): 20 candidates scored in at most 120 ms at the 95th percentile.

Without --model, a cross-encoder is built from the first --layers layers of the packaged all-MiniLM-L6-v2 as
`rag train-reranker --layers` builds one (a fresh head: the speed does not depend on its weights). Candidates are real chunks of the Python docs when that eval collection
exists (.rag-eval), else synthetic passages of the same length. Agreement with fp32 is the share of the fp32 top-5
that the backend also ranks in its top 5.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import rag  # noqa: F401  (offline environment)
from rag.rerank import BACKENDS, build_cross_encoder

QUERY = "How do I remove a file or a directory in Python?"
TARGET_P95_MS = 120.0


def candidates(count: int = 30) -> list[str]:
    try:
        from rag.config import Settings
        from rag.embedder import get_embedder
        from rag.store import open_store

        store = open_store(Settings(data_dir=Path(".rag-eval"), collection="python-docs"))
        try:
            hits = store.search_dense(get_embedder().embed_query(QUERY), count)
        finally:
            store.close()
        if len(hits) == count:
            return [f"{h.payload.get('title')}\n{h.payload['text']}" for h in hits]
    except Exception:  # no eval collection: fall back to synthetic text
        pass
    sentence = (
        "The os module provides functions to remove files and directories, such as os.remove and os.rmdir. "
    )
    return [sentence * 8 for _ in range(count)]


def time_backend(
    model_dir: str, backend: str, max_length: int, texts: list[str], repeats: int
) -> tuple[float, float, list[float]]:
    """Median and 95th-percentile milliseconds to score all texts, and the scores."""
    model = build_cross_encoder(model_dir, backend, max_length)
    pairs = [(QUERY, t) for t in texts]
    scores = [float(s) for s in model.predict(pairs, batch_size=32, show_progress_bar=False)]  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(pairs, batch_size=32, show_progress_bar=False)
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), statistics.quantiles(runs, n=20)[18], scores


def top5(scores: list[float]) -> set[int]:
    return set(sorted(range(len(scores)), key=lambda i: -scores[i])[:5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--layers", type=int, default=6, help="layers of the built model (without --model)")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or _minilm_cross_encoder(Path(tmp), args.layers)
        texts = candidates(args.candidates)
        print(
            f"{datetime.now(UTC):%Y-%m-%d}, {platform.processor() or platform.machine()}, torch threads "
            f"{torch.get_num_threads()}, {args.model or f'MiniLM cross-encoder of {args.layers} layers'}"
        )
        print(
            f"{'backend':<12} {'max_len':>7} {'median ms':>10} {'p95 ms':>8} {'top-5 agreement':>16}  "
            f"({len(texts)} pairs; target p95 <= {TARGET_P95_MS:.0f} ms for 20)"
        )
        reference: dict[int, set[int]] = {}
        for max_length in (256, 128):
            for backend in BACKENDS:
                ms, p95, scores = time_backend(model_dir, backend, max_length, texts, args.repeats)
                reference.setdefault(max_length, top5(scores)) if backend == "torch" else None
                agreement = len(top5(scores) & reference[max_length]) / 5
                verdict = "PASS" if p95 <= TARGET_P95_MS else "FAIL"
                print(f"{backend:<12} {max_length:>7} {ms:>10.1f} {p95:>8.1f} {agreement:>16.2f}  {verdict}")


def _minilm_cross_encoder(folder: Path, layers: int) -> str:
    from training.reranker import base_cross_encoder

    path = folder / "minilm-cross-encoder"
    base_cross_encoder(layers).save(str(path))
    return str(path)


if __name__ == "__main__":
    main()
