"""MACs as the competition's own counter saw them: ptflops module hooks, ReLU family ignored.

It differs from fvcore's trace-based count (``distill.complexity``) by up to about 13 %: BatchNorm and
some activations are counted, functional calls are not.
"""
from __future__ import annotations

import copy
import io

import torch
from torch import nn

# Modules the competition's counter left out of its total.
COMPETITION_IGNORED = [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU]


def competition_macs(model: nn.Module, input_size: int | tuple[int, int]) -> int:
    """MACs as the competition counted them: ptflops module hooks (pytorch backend, functional
    counting off), ReLU/ReLU6/LeakyReLU/PReLU/ELU ignored. Runs on a copy of the model."""
    from ptflops import get_model_complexity_info

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        macs, _ = get_model_complexity_info(
            model, (3, h, w), as_strings=False, print_per_layer_stat=False, ost=io.StringIO(),
            backend="pytorch", ignore_modules=COMPETITION_IGNORED,
            backend_specific_config={"count_functional": False},
        )
    if macs is None:
        raise RuntimeError(f"ptflops could not count {type(model).__name__} at {h}x{w}")
    return int(macs)
