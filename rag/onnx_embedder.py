"""The bi-encoder run by ONNX Runtime, in fp32 or dynamic int8, without optimum, torch or sentence-transformers.

The model is exported once (rag/onnx_export.py), pooling and normalization inside the graph (the output is the
sentence embedding itself), and saved with its fast tokenizer in a cache folder. Serving then loads only
onnxruntime and `tokenizers`: no torch in the process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import RagError
from rag.onnx_export import EAGER, build_once, cores
from rag.onnx_export import export as export_graph

log = logging.getLogger("rag.embedder")

FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
# ONNX Runtime runs 16 passages at a time faster than 64 (int8 MiniLM: 52 vs 49 chunks/s at 256 tokens here,
# 2026-12-04: the activations stay in cache); a caller's batch is still the unit of progress.
RUN_BATCH = 16
FORMAT = 1  # bump when the export changes, so caches built by older code are rebuilt


class OnnxEmbedder:
    """What Embedder offers (embed, embed_query, count_tokens, dimension, max_tokens), run by ONNX Runtime."""

    def __init__(
        self,
        name: str,
        model_path: str,
        cache_root: Path,
        backend: str,
        batch_size: int = 64,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = ensure_exported(name, model_path, cache_root, backend)
        info = json.loads((folder / "embedder.json").read_text())
        self.name = name
        self.backend = backend
        self.batch_size = batch_size
        self.dimension = int(info["dimension"])
        self.max_tokens = int(info["max_tokens"])
        self.precision = "int8" if backend == "onnx-int8" else "float32"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cores()
        # One inference at a time per session is the fast path here: ORT's own thread pool already uses the cores.
        self.session = ort.InferenceSession(
            str(folder / FILES[backend]), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._batcher = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._batcher.enable_truncation(self.max_tokens)
        self._batcher.enable_padding(pad_id=int(info["pad_id"]), pad_token=str(info["pad_token"]))

    def count_tokens(self, text: str) -> int:
        """Word pieces the model would read, special tokens included."""
        return len(self._counter.encode(text).ids)

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors in the order of texts, batched longest first so each batch pads as little as it can."""
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self._encode([texts[i] for i in batch])
            if on_batch is not None:
                on_batch(len(batch))
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self._run(texts[i : i + RUN_BATCH]) for i in range(0, len(texts), RUN_BATCH)])

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._batcher.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        out = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embed([text])[0]]


def cache_folder(name: str, model_path: str, cache_root: Path) -> Path:
    """One folder per model: its name made safe, and a hash of where its weights are and of their files' sizes and
    times, so two folders named alike do not share an export, and weights trained again are exported again."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[-60:] or "model"
    digest = hashlib.sha256(f"{FORMAT}:{model_path}:{_weights_stamp(model_path)}".encode()).hexdigest()[:12]
    return cache_root / f"{slug}-{digest}"


def _weights_stamp(model_path: str) -> str:
    """A local folder's weight files by name, size and time; empty for a hub name (its cache does not change)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return ""
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
    stats = [(f.name, f.stat()) for f in files]
    return ";".join(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats)


def ensure_exported(name: str, model_path: str, cache_root: Path, backend: str) -> Path:
    """The cache folder holding the backend's ONNX file, exported (and quantized) first if it is not there yet."""
    folder = cache_folder(name, model_path, cache_root)
    build_once(folder, folder / FILES[backend], folder / FILES["onnx"], lambda: export(model_path, folder))
    return folder


def export(model_path: str, folder: Path) -> None:
    """torch.onnx export of the sentence-transformers model (dynamic batch and length), its tokenizer and facts;
    the model file is written last and atomically, so a folder with it is complete."""
    from sentence_transformers import SentenceTransformer

    log.warning(
        "exporting the embedder %s to ONNX in %s (once; 15 s on a 2-core machine)", model_path, folder
    )
    try:
        model = SentenceTransformer(model_path, device="cpu", model_kwargs=EAGER).eval()
    except OSError as exc:
        raise RagError(f"cannot load embedder {model_path!r} to export it (offline?): {exc}") from exc
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise RagError(
            f"the onnx backends need a fast tokenizer; {model_path!r} has none: use RAG_EMBED_BACKEND=torch"
        )
    scratch = folder / "tokenizer.partial"
    tokenizer.save_pretrained(str(scratch))  # the fast tokenizer's one-file form is its tokenizer.json
    shutil.copyfile(scratch / "tokenizer.json", folder / "tokenizer.json")
    shutil.rmtree(scratch)
    info = {
        "source": model_path,
        "dimension": int(model.get_embedding_dimension() or 0),
        "max_tokens": int(model.max_seq_length or 512),
        "pad_id": int(tokenizer.pad_token_id or 0),
        "pad_token": str(tokenizer.pad_token or "[PAD]"),
    }
    (folder / "embedder.json").write_text(json.dumps(info, indent=1))
    export_graph(
        _SentenceEmbedding(model).eval(),
        getattr(model[0], "auto_model").config,  # noqa: B009  (typed as a Module by torch's stubs)
        folder / FILES["onnx"],
        "sentence_embedding",
    )


def _make_wrapper() -> type:
    import torch

    class SentenceEmbedding(torch.nn.Module):
        """The whole sentence-transformers stack (transformer, pooling, normalize) as one forward of tensors."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            return self.model(features)["sentence_embedding"]

    return SentenceEmbedding


def _SentenceEmbedding(model: Any) -> Any:  # noqa: N802  a class built on first use: torch is imported lazily
    return _make_wrapper()(model)
