"""MACs counted with fvcore (one multiply-add = one MAC, from a trace of the forward pass) and parameters.

The competition's own counter and score live in ``distill.competition``.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class MacsReport:
    """fvcore count at batch 1: ``total`` MACs, per-module MACs, per-operator MACs, uncounted operators."""

    total: int
    by_module: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    by_module_and_operator: dict[str, dict[str, int]] = field(default_factory=dict)


def _input(model: nn.Module, input_size: int | tuple[int, int]) -> torch.Tensor:
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    try:
        p = next(model.parameters())
        return torch.zeros(1, 3, h, w, dtype=p.dtype, device=p.device)
    except StopIteration:
        return torch.zeros(1, 3, h, w)


def count_macs(model: nn.Module, input_size: int | tuple[int, int]) -> MacsReport:
    """Count MACs with fvcore (one multiply-add = one MAC), batch 1, eval mode; the model is not changed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    was_training = model.training
    model.eval()
    try:
        analysis = FlopCountAnalysis(model, _input(model, input_size))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            total = int(analysis.total())
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            unsupported = dict(analysis.unsupported_ops())
            by_both = {k: {op: int(n) for op, n in v.items()} for k, v in analysis.by_module_and_operator().items()}
    finally:
        model.train(was_training)
    return MacsReport(total, by_module, by_operator, unsupported, by_both)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
