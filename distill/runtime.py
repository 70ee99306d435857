"""ONNX export (the ``torch.export``-based exporter) and ONNX Runtime sessions on the CPU: what
``distill export`` ships, and the teacher's backend for the cache fill when it is faster than eager
PyTorch (``benchmarks/fill_backend.py`` measures both).
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.checkpoint import atomic_write

ONNX_OPSET = 18


def to_onnx(model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = ONNX_OPSET) -> Path:
    """Write ``model`` as ONNX (``torch.onnx.export(dynamo=True)``, a dynamic batch dimension), atomically.
    ``example``: an input batch (two or more images: a batch of one would fix the batch size)."""
    if len(example) < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    name = next(iter(inspect.signature(model.forward).parameters))
    dynamic = {name: {0: torch.export.Dim("batch")}}
    return atomic_write(path, lambda tmp: torch.onnx.export(
        model, (example,), tmp, dynamo=True, opset_version=opset, input_names=["image"], output_names=["logits"],
        dynamic_shapes=dynamic, verbose=False, external_data=False))


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` (``threads``: intra-op threads, default torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    # no busy-waiting between runs: the fill augments and writes between the teacher's batches
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """A model's forward pass in an ONNX Runtime session (``onnx_session``; float32): float input batch ->
    float32 logits tensor."""

    def __init__(self, session):
        self.session = session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {"image": inputs})[0])
