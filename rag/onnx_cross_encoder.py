"""A cross-encoder run by ONNX Runtime, in fp32 or dynamic int8, without optimum.

sentence-transformers' ONNX backend needs optimum-onnx, which pins transformers < 4.58; this stack runs
transformers 5. So a local CrossEncoder folder is exported here with `torch.onnx` (once, beside its weights:
model.onnx, and model.int8.onnx quantized by onnxruntime.quantization), tokenized by its own fast tokenizer, and
scored as CrossEncoder.predict scores a one-label model: the sigmoid of the logit.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("rag.rerank")

FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_export_lock = threading.Lock()


class OnnxCrossEncoder:
    """predict() as sentence-transformers' CrossEncoder has it, for a one-label model."""

    def __init__(self, folder: Path, backend: str, max_length: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = ensure_exported(folder, backend)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _cores()
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
    target = folder / FILES[backend]
    with _export_lock:
        if not target.is_file():
            fp32 = folder / FILES["onnx"]
            if not fp32.is_file():
                export(folder, fp32)
            if backend == "onnx-int8":
                quantize(fp32, target)
    return target


def export(folder: Path, target: Path) -> None:
    """torch.onnx export of the folder's CrossEncoder (dynamic batch and length), written atomically."""
    import torch
    from sentence_transformers import CrossEncoder

    log.info("exporting the cross-encoder in %s to ONNX", folder)
    model = CrossEncoder(str(folder), device="cpu").model.eval()
    example = torch.ones((2, 8), dtype=torch.long)
    args = (example, torch.ones_like(example), torch.zeros_like(example))
    axes = {name: {0: "batch", 1: "length"} for name in _INPUTS}
    partial = target.with_name(target.name + ".partial")
    with warnings.catch_warnings():  # the tracer's notes on BERT's Python branches, not ours to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(partial),
            input_names=list(_INPUTS),
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(partial, target)


def quantize(fp32: Path, target: Path) -> None:
    """Dynamic int8 weights (activations quantized at run time), written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing %s to int8", fp32)
    partial = target.with_name(target.name + ".partial")
    logging.disable(logging.WARNING)  # its advice to pre-process is for static (calibrated) quantization
    try:
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    os.replace(partial, target)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load(name: str, backend: str, max_length: int) -> Any:
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"the {backend} backend needs a local cross-encoder folder (it is exported there once), not {name!r}"
        )
    return OnnxCrossEncoder(folder, backend, max_length)
