"""Second stage: a sentence-transformers CrossEncoder rescoring (query, chunk) pairs.

No cross-encoder ships offline, so the reranker is often off. It then says why, once, and the pipeline keeps the
fused order; it never pretends to rerank.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from rag.config import RerankBackend, Settings
from rag.reranker_card import RerankerCard, collection_reranker_dir
from rag.store import Hit
from rag.store.payload import DocumentRecord

log = logging.getLogger("rag.rerank")

NO_MODEL = (
    "reranking is off: this collection has no trained cross-encoder (rag train-reranker trains one and installs "
    "it only if it ranks questions about documents it never saw better than the search alone) and "
    "RAG_RERANK_MODEL is not set (a Hugging Face name such as cross-encoder/ms-marco-MiniLM-L-6-v2, or a local "
    "folder)"
)


@dataclass
class RerankStatus:
    active: bool
    model: str | None
    reason: str | None
    origin: str = ""  # where the model came from: RAG_RERANK_MODEL, or the collection's own trained one

    def describe(self) -> str:
        if not self.active:
            return self.reason or "off"
        return f"cross-encoder {self.model}" + (f" ({self.origin})" if self.origin else "")


class Reranker:
    def __init__(self, model: Any, name: str, max_length: int, batch_size: int, threshold: float) -> None:
        self.model = model
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self.threshold = threshold  # the 0-1 score under which a passage does not answer
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


BACKENDS: tuple[str, ...] = get_args(RerankBackend)


def build_cross_encoder(name: str, backend: str = "torch", max_length: int = 256) -> Any:
    """A cross-encoder on CPU with predict() as sentence-transformers has it: torch (optionally cast to bf16;
    torch's dynamic int8 quantization broke the CrossEncoder's forward here), or ONNX Runtime in fp32 or dynamic
    int8 for a local folder (rag.onnx_cross_encoder exports it there once)."""
    import torch
    from sentence_transformers import CrossEncoder

    if backend not in BACKENDS:
        raise ValueError(f"unknown reranker backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend.startswith("onnx"):
        from rag import onnx_cross_encoder

        return onnx_cross_encoder.load(name, backend, max_length)
    path = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    model = CrossEncoder(path, max_length=max_length, device="cpu")
    if backend == "torch-bf16":
        model.model.to(torch.bfloat16)
    return model


def load_reranker(
    name: str | None,
    max_length: int = 256,
    batch_size: int = 32,
    backend: str = "torch",
    threshold: float = 0.2,
    version: str = "",
) -> tuple[Reranker | None, RerankStatus]:
    """The CrossEncoder, or None with the reason it is off (logged once per process).

    version: changes when the model in the folder `name` is replaced, so a long-running app loads the new one.
    """
    return _load(name or "", max_length, batch_size, backend, threshold, version)


def reranker_from_settings(
    settings: Settings, collection: str | None = None
) -> tuple[Reranker | None, RerankStatus]:
    """RAG_RERANK_MODEL when set, else the collection's own trained model (its card gives length, backend and
    threshold; RAG_RERANK_THRESHOLD, when set, still wins), else none and why.

    collection: the settings' collection unless named."""
    if settings.rerank_model:
        reranker, status = load_reranker(
            settings.rerank_model,
            settings.rerank_max_length,
            settings.rerank_batch_size,
            settings.rerank_backend,
            settings.rerank_threshold,
        )
        return reranker, replace(status, origin="RAG_RERANK_MODEL")
    name = collection or settings.collection
    folder = collection_reranker_dir(settings, name)
    card = RerankerCard.load(folder)
    if card is None:
        return load_reranker(None)
    threshold = _threshold(settings, card)
    reranker, status = load_reranker(
        str(folder), card.max_length, settings.rerank_batch_size, card.backend, threshold, card.trained_at
    )
    return reranker, replace(status, origin=_origin(name, card, threshold))


@lru_cache(maxsize=4)
def _load(
    name: str, max_length: int, batch_size: int, backend: str, threshold: float, version: str
) -> tuple[Reranker | None, RerankStatus]:
    if not name:
        log.warning(NO_MODEL)
        return None, RerankStatus(False, None, NO_MODEL)
    try:
        model = build_cross_encoder(name, backend, max_length)
    except Exception as exc:  # offline hub lookups raise several error types
        reason = f"reranking is off: cannot load cross-encoder {name!r}: {str(exc).splitlines()[0][:200]}"
        log.warning(reason)
        return None, RerankStatus(False, name, reason)
    return Reranker(model, name, max_length, batch_size, threshold), RerankStatus(True, name, None)


def describe_reranker(settings: Settings, collection: str | None = None) -> str:
    """Which reranker a search of the collection would use and where it comes from, without loading it."""
    if settings.rerank_model:
        return f"cross-encoder {settings.rerank_model} (RAG_RERANK_MODEL)"
    name = collection or settings.collection
    folder = collection_reranker_dir(settings, name)
    card = RerankerCard.load(folder)
    if card is None:
        return NO_MODEL
    return f"cross-encoder {folder} ({_origin(name, card, _threshold(settings, card))})"


def retrain_advice(settings: Settings, collection: str, records: list[DocumentRecord]) -> str | None:
    """A line offering to retrain the collection's reranker when its documents changed by more than
    RAG_RERANK_RETRAIN_SHARE since training (never forced: the old model keeps serving meanwhile)."""
    if settings.rerank_model:
        return None
    card = RerankerCard.load(collection_reranker_dir(settings, collection))
    share = card.changed_share(records) if card is not None else None
    if card is None or share is None or share <= settings.rerank_retrain_share:
        return None
    return (
        f"{share:.0%} of the documents changed since this collection's reranker was trained "
        f"({card.trained_at[:10]}); retrain it: rag train-reranker --collection {collection}"
    )


def _threshold(settings: Settings, card: RerankerCard) -> float:
    """The card's calibrated threshold, unless RAG_RERANK_THRESHOLD is set."""
    return settings.rerank_threshold if "rerank_threshold" in settings.model_fields_set else card.threshold


def _origin(collection: str, card: RerankerCard, threshold: float) -> str:
    return f"trained for collection {collection!r} {card.trained_at[:10]}, threshold {threshold:.3f}"
