"""Second stage: a sentence-transformers CrossEncoder rescoring (query, chunk) pairs.

No cross-encoder ships offline, so the reranker is often off. It then says why, once, and the pipeline keeps the
fused order; it never pretends to rerank.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.store import Hit

log = logging.getLogger("rag.rerank")

NO_MODEL = (
    "reranking is off: no cross-encoder is configured (none can be installed offline; set RAG_RERANK_MODEL to a "
    "Hugging Face name such as cross-encoder/ms-marco-MiniLM-L-6-v2, or to a local folder such as one "
    "`rag train-reranker` trains from this collection)"
)


@dataclass
class RerankStatus:
    active: bool
    model: str | None
    reason: str | None

    def describe(self) -> str:
        return f"cross-encoder {self.model}" if self.active else (self.reason or "off")


class Reranker:
    def __init__(self, model: Any, name: str, max_length: int, batch_size: int) -> None:
        self.model = model
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def score(self, query: str, texts: list[str]) -> Any:
        """The cross-encoder's 0-1 relevance of each text to the query."""
        with self._lock:
            return self.model.predict(
                [(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
            )

    def rerank(self, query: str, hits: list[Hit], top_n: int) -> tuple[list[Hit], float]:
        """Hits sorted by cross-encoder score (0-1 relevance), best top_n; and the time it took in ms."""
        if not hits:
            return [], 0.0
        started = time.perf_counter()
        scores = self.score(query, [h.chunk.passage() for h in hits])
        for hit, score in zip(hits, scores, strict=True):
            hit.rerank_score = float(score)
        ranked = sorted(hits, key=lambda h: h.rerank_score or 0.0, reverse=True)[:top_n]
        return ranked, (time.perf_counter() - started) * 1000


BACKENDS = ("torch", "torch-bf16")


def build_cross_encoder(name: str, backend: str = "torch", max_length: int = 256) -> Any:
    """A sentence-transformers CrossEncoder on CPU, optionally cast to bf16 (torch's dynamic int8 quantization
    broke the CrossEncoder's forward here, so it is not offered).

    The ONNX backend of sentence-transformers needs optimum-onnx, which requires transformers < 4.58; this stack
    runs transformers 5, so the CPU speed-ups offered here are torch's own.
    """
    import torch
    from sentence_transformers import CrossEncoder

    if backend not in BACKENDS:
        raise ValueError(f"unknown reranker backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    path = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    model = CrossEncoder(path, max_length=max_length, device="cpu")
    if backend == "torch-bf16":
        model.model.to(torch.bfloat16)
    return model


def load_reranker(
    name: str | None, max_length: int = 256, batch_size: int = 32, backend: str = "torch"
) -> tuple[Reranker | None, RerankStatus]:
    """The configured CrossEncoder, or None with the reason it is off (logged once per process)."""
    return _load(name or "", max_length, batch_size, backend)


def reranker_from_settings(settings: Settings) -> tuple[Reranker | None, RerankStatus]:
    return load_reranker(
        settings.rerank_model, settings.rerank_max_length, settings.rerank_batch_size, settings.rerank_backend
    )


@lru_cache(maxsize=4)
def _load(name: str, max_length: int, batch_size: int, backend: str) -> tuple[Reranker | None, RerankStatus]:
    if not name:
        log.warning(NO_MODEL)
        return None, RerankStatus(False, None, NO_MODEL)
    try:
        model = build_cross_encoder(name, backend, max_length)
    except Exception as exc:  # offline hub lookups raise several error types
        reason = f"reranking is off: cannot load cross-encoder {name!r}: {str(exc).splitlines()[0][:200]}"
        log.warning(reason)
        return None, RerankStatus(False, name, reason)
    return Reranker(model, name, max_length, batch_size), RerankStatus(True, name, None)
