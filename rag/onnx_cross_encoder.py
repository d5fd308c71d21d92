"""A cross-encoder run by ONNX Runtime, in fp32 or dynamic int8, without optimum.

A local CrossEncoder folder is exported once, beside its weights (model.onnx, and model.int8.onnx; see
rag/onnx_export.py), tokenized by its own fast tokenizer, and scored as CrossEncoder.predict scores a one-label
model: the sigmoid of the logit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.onnx_export import EAGER, build_once, cores
from rag.onnx_export import export as export_graph

log = logging.getLogger("rag.rerank")

FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


class OnnxCrossEncoder:
    """predict() as sentence-transformers' CrossEncoder has it, for a one-label model."""

    def __init__(self, folder: Path, backend: str, max_length: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = ensure_exported(folder, backend)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cores()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.max_length = max_length

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        scores: list[np.ndarray] = []
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            encoded = self.tokenizer(
                [q for q, _ in batch],
                [p for _, p in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items() if k in self.inputs}
            logits = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
            scores.append(1.0 / (1.0 + np.exp(-logits)))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def ensure_exported(folder: Path, backend: str) -> Path:
    """The backend's ONNX file in the folder, exported (and quantized) first if it is not there yet."""
    target, fp32 = folder / FILES[backend], folder / FILES["onnx"]
    build_once(folder, target, fp32, lambda: export(folder, fp32))
    return target


def export(folder: Path, target: Path) -> None:
    """The folder's CrossEncoder as one ONNX graph of logits (rag/onnx_export.py)."""
    from sentence_transformers import CrossEncoder

    log.info("exporting the cross-encoder in %s to ONNX", folder)
    model = CrossEncoder(str(folder), device="cpu", model_kwargs=EAGER).model.eval()
    export_graph(model, model.config, target, "logits")


def load(name: str, backend: str, max_length: int) -> Any:
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"the {backend} backend needs a local cross-encoder folder (it is exported there once), not {name!r}"
        )
    return OnnxCrossEncoder(folder, backend, max_length)
