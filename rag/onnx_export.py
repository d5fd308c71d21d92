"""Exporting a transformer to ONNX and quantizing it to int8, for the bi-encoder and the cross-encoder alike.

optimum-onnx would do this, but it pins transformers < 4.58 and this stack runs transformers 5; so: `torch.onnx`
traces the model (eager attention), onnxruntime's transformer optimizer fuses attention, GELU and layer norms, and
`onnxruntime.quantization` writes dynamic int8 weights with a scale per output channel.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("rag.onnx")

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Eager attention, not SDPA: its graph is the one onnxruntime's BERT optimizer fuses into Attention nodes, which
# int8 then runs as QAttention (MiniLM: 36 to 48 chunks/s here, 2026-12-04).
EAGER = {"attn_implementation": "eager"}


def export(module: Any, config: Any, target: Path, output: str) -> None:
    """Trace module(input_ids, attention_mask, token_type_ids) -> output (dynamic batch and length), fuse it,
    and write it to target atomically."""
    import torch

    example = torch.ones((2, 8), dtype=torch.long)
    args = (example, torch.ones_like(example), torch.zeros_like(example))
    axes = {name: {0: "batch", 1: "length"} for name in INPUTS}
    partial = target.with_name(target.name + ".partial")
    with warnings.catch_warnings():  # the tracer's notes on BERT's Python branches, not ours to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(partial),
            input_names=list(INPUTS),
            output_names=[output],
            dynamic_axes={**axes, output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    _fuse(partial, config)
    os.replace(partial, target)


def _fuse(path: Path, config: Any) -> None:
    """onnxruntime's transformer optimizer, in place (a no-op where the architecture's patterns are not BERT's)."""
    from onnxruntime.transformers import optimizer

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    logging.disable(logging.WARNING)  # its notes on patterns it did not find
    try:
        fused = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
        )
    finally:
        logging.disable(logging.NOTSET)
    fused.save_model_to_file(str(path))


_build_lock = threading.Lock()


def build_once(folder: Path, target: Path, fp32: Path, export_fp32: Callable[[], None]) -> None:
    """target (fp32, or its int8 copy) built in folder unless it is there: under a thread lock and a lock file, so
    two processes (`rag ui` and `rag ingest` started together, a training and a server) never both write it."""
    if target.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with _build_lock, open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not fp32.is_file():
            export_fp32()
        if not target.is_file():
            quantize(fp32, target)


def quantize(fp32: Path, target: Path) -> None:
    """Dynamic int8 with a scale per output channel: per tensor, MiniLM's embeddings fell to cosine 0.93 of fp32
    (0.994 per channel; 1,000 Python-docs passages, 2026-12-04). Written atomically."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.warning("quantizing %s to int8", fp32)
    partial = target.with_name(target.name + ".partial")
    logging.disable(logging.WARNING)  # its advice to pre-process is for static (calibrated) quantization
    try:
        quantize_dynamic(
            str(fp32),
            str(partial),
            per_channel=True,
            weight_type=QuantType.QInt8,
            # the fused nodes are in Microsoft's domain, which ONNX shape inference cannot type
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)
    os.replace(partial, target)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
