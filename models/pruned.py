"""Rebuilding a structurally pruned network from plain data.

Pruning (``distill.prune``, with Torch-Pruning) changes the channel counts of layers. A pruned model's
definition is ``{"pruned": <the original definition>, "shapes": {module name: sizes}}``; ``layer_shapes``
records the sizes, ``restore_shapes`` gives a freshly built original the recorded sizes again (new,
empty layers of the same kind), so its state dict then loads.
"""
from __future__ import annotations

from typing import Any

from torch import nn


def layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """The channel sizes of every conv, batch norm and linear layer of ``model``."""
    shapes: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            shapes[name] = {"in": module.in_channels, "out": module.out_channels, "groups": module.groups}
        elif isinstance(module, nn.BatchNorm2d):
            shapes[name] = {"features": module.num_features}
        elif isinstance(module, nn.Linear):
            shapes[name] = {"in": module.in_features, "out": module.out_features}
    return shapes


def _resized(module: nn.Module, size: dict[str, int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(size["in"], size["out"], module.kernel_size, module.stride, module.padding, module.dilation,
                         size["groups"], module.bias is not None, module.padding_mode)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(size["features"], module.eps, module.momentum, module.affine, module.track_running_stats)
    return nn.Linear(size["in"], size["out"], module.bias is not None)


def restore_shapes(model: nn.Module, shapes: dict[str, Any]) -> nn.Module:
    """``model`` with every layer named in ``shapes`` replaced by an empty one of the recorded sizes."""
    for name, size in shapes.items():
        module = model.get_submodule(name)
        if layer_shapes(module).get("") != size:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, _resized(module, size))
    return model
