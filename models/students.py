"""Tiny students built only from plain torch modules, from a compact, readable spec.

A spec is a stem conv followed by stages of blocks, then global pooling and a linear head:

    StudentSpec(input_size=64, stem=16, stages=[Stage("ds", 24, stride=2), ...])

or the same thing as a dict (what YAML gives):

    {"input_size": 64, "stem": 16, "stages": [{"block": "ds", "out": 24, "stride": 2}, ...]}

Block types:
- ``conv``: 3x3 (or ``kernel``) conv, BN, activation.
- ``ds``: depthwise-separable: depthwise kxk conv, BN, act, then 1x1 conv, BN, act.
- ``ir``: MobileNetV2 inverted residual: 1x1 expand (``expand`` x), depthwise kxk, linear 1x1
  project; identity shortcut when stride 1 and channels match.
- ``shuffle``: ShuffleNet's unit: grouped 1x1 (``groups``), channel shuffle (no MACs), depthwise kxk, grouped 1x1;
  identity shortcut when stride 1 and channels match.

``rep: N`` trains every conv + BN of the student as an over-parameterised block (``models.reparam``: N parallel
k x k branches, a 1 x 1 branch and an identity) that ``reparameterize`` folds exactly into the plain student
of the same spec; exported model files hold the plain form. ``rep_form`` says how the branches train: ``bn``, each
its own conv + BN (RepVGG); ``linear``, scaled kernels summed before one conv + BN (OREPA: one conv per layer).

Only ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU``/``nn.ReLU6``/``nn.Hardswish``, pooling,
``nn.Flatten``, ``nn.Dropout`` and ``nn.Linear`` hold computation, so any hook-based MAC counter
sees every multiply-add.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .common import Preprocess
from .registry import lookup
from .reparam import RepConvBN, merged_conv

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}
REP_FORMS = ("bn", "linear")


@dataclass
class Stage:
    """``repeats`` blocks of one type; the first has ``stride``, the rest stride 1."""

    block: str
    out: int
    stride: int = 1
    repeats: int = 1
    expand: float = 1.0
    kernel: int = 3
    groups: int = 1  # of a shuffle block's 1 x 1 convs (the other blocks take 1)


@dataclass
class StudentSpec:
    """Full description of a student. ``width`` multiplies every channel count."""

    input_size: int = 64
    stem: int = 16
    stem_stride: int = 2
    stages: list[Stage] = field(default_factory=list)
    head: int = 0  # optional 1x1 conv before pooling (0 = none)
    hidden: int = 0  # optional Linear + activation after pooling, before the last Linear (0 = none)
    act: str = "relu"
    width: float = 1.0
    dropout: float = 0.0
    rep: int = 0  # training-time k x k branches per conv + BN (0 = plain); folded away for deployment
    rep_form: str = "bn"  # how the branches train: "bn" (a BN each) or "linear" (merged before one conv + BN)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudentSpec":
        data = dict(data)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"student spec: unknown keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        stages = []
        for i, s in enumerate(data.pop("stages", [])):
            if isinstance(s, Stage):
                stages.append(s)
            elif isinstance(s, dict):
                bad = set(s) - set(Stage.__dataclass_fields__)
                if bad:
                    raise ValueError(f"student spec: stage {i} has unknown keys {sorted(bad)}")
                stages.append(Stage(**s))
            else:  # compact row: [block, out, stride, repeats, expand, kernel, groups]
                stages.append(Stage(*s))
        return cls(stages=stages, **data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.act not in ACTIVATIONS:
            raise ValueError(f"student spec: act={self.act!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.hidden < 0 or self.head < 0:
            raise ValueError(f"student spec: head and hidden must be >= 0 (0 = none), got {self.head}, {self.hidden}")
        if self.width <= 0:
            raise ValueError(f"student spec: width must be > 0, got {self.width}")
        if not isinstance(self.rep, int) or self.rep < 0:
            raise ValueError(f"student spec: rep must be an integer >= 0 (0 = plain), got {self.rep!r}")
        if self.rep_form not in REP_FORMS:
            raise ValueError(f"student spec: rep_form={self.rep_form!r}; choose one of {list(REP_FORMS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"student spec: dropout must be in [0, 1), got {self.dropout}")
        for i, s in enumerate(self.stages):
            if s.block not in BLOCKS:
                raise ValueError(f"student spec: stage {i} block={s.block!r}; choose one of {sorted(BLOCKS)}")
            if s.out < 1 or s.repeats < 1 or s.stride not in (1, 2) or s.kernel % 2 == 0:
                raise ValueError(f"student spec: stage {i} has invalid values {s}")
            if (s.block == "shuffle") != (s.groups > 1) or s.groups < 1:
                raise ValueError(f"student spec: stage {i} groups={s.groups}: a shuffle block takes groups >= 2, "
                                 "the other blocks groups 1")
        if self.input_size < self.total_stride:
            raise ValueError(
                f"student spec: input_size={self.input_size} is smaller than the network's total stride "
                f"{self.total_stride}; use input_size >= {self.total_stride}"
            )

    @property
    def total_stride(self) -> int:
        stride = self.stem_stride
        for s in self.stages:
            stride *= s.stride
        return stride


def _channels(c: float, width: float) -> int:
    """Scale a channel count by ``width`` and round to a multiple of 4 (at least 4)."""
    return max(4, int(round(c * width / 4)) * 4)


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int, groups: int, act: str | None,
                rep: int = 0, rep_form: str = "bn") -> nn.Sequential:
    """Conv + BN (+ activation); with ``rep`` > 0 the conv + BN is a ``RepConvBN`` of ``rep`` branches (``rep_form``
    ``bn``) or a conv whose kernel merges ``rep`` branches, then one BN (``linear``)."""
    if rep and rep_form == "linear":
        layers: list[nn.Module] = [merged_conv(cin, cout, kernel, stride, groups, rep), nn.BatchNorm2d(cout)]
    elif rep:
        layers = [RepConvBN(cin, cout, kernel, stride, groups, rep)]
    else:
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(ACTIVATIONS[act](inplace=True) if act != "hardswish" else nn.Hardswish())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block; the shortcut is a tensor addition (no MACs)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: float, kernel: int, act: str, rep: int = 0,
                 rep_form: str = "bn"):
        super().__init__()
        hidden = _channels(cin * expand, 1.0) if expand != 1 else cin
        layers = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, 1, 1, act, rep, rep_form))
        layers.append(conv_bn_act(hidden, hidden, kernel, stride, hidden, act, rep, rep_form))
        layers.append(conv_bn_act(hidden, cout, 1, 1, 1, None, rep, rep_form))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class ShuffleBlock(nn.Module):
    """ShuffleNet's unit without its concat path: a grouped 1 x 1 conv, a channel shuffle (a reshape and a transpose,
    no MACs), a depthwise k x k conv that carries the stride, and a grouped 1 x 1 conv to ``cout``; an identity shortcut
    (a tensor addition) when the stride is 1 and the channels match. ``groups`` divides the channel counts: each 1 x 1
    conv costs ``1 / groups`` of a dense one, and the shuffle lets the next group see every group's channels."""

    def __init__(self, cin: int, cout: int, stride: int, expand: float, kernel: int, act: str, rep: int = 0,
                 rep_form: str = "bn", groups: int = 4):
        super().__init__()
        hidden = _channels(cout * expand, 1.0)
        if cin % groups or hidden % groups or cout % groups:
            raise ValueError(f"student spec: a shuffle block of {cin} -> {hidden} -> {cout} channels cannot be split "
                             f"into groups={groups}: choose groups that divide every channel count")
        self.groups = groups
        self.reduce = conv_bn_act(cin, hidden, 1, 1, groups, act, rep, rep_form)
        self.depthwise = conv_bn_act(hidden, hidden, kernel, stride, hidden, None, rep, rep_form)
        self.project = conv_bn_act(hidden, cout, 1, 1, groups, None, rep, rep_form)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        b, c, h, w = y.shape  # channel shuffle: group-major order to channel-major order
        y = y.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def _conv_block(cin: int, cout: int, stride: int, expand: float, kernel: int, act: str, rep: int = 0,
                rep_form: str = "bn") -> nn.Module:
    return conv_bn_act(cin, cout, kernel, stride, 1, act, rep, rep_form)


def _ds_block(cin: int, cout: int, stride: int, expand: float, kernel: int, act: str, rep: int = 0,
              rep_form: str = "bn") -> nn.Module:
    return nn.Sequential(conv_bn_act(cin, cin, kernel, stride, cin, act, rep, rep_form),
                         conv_bn_act(cin, cout, 1, 1, 1, act, rep, rep_form))


# block name -> builder(cin, cout, stride, expand, kernel, act[, rep, rep_form]); a new block type is one entry here
BLOCKS: dict[str, Callable[..., nn.Module]] = {"conv": _conv_block, "ds": _ds_block, "ir": InvertedResidual,
                                               "shuffle": ShuffleBlock}


class Student(nn.Module):
    """``features`` (stem + stages + optional head conv) then ``classifier`` (pool, flatten, optional hidden
    linear + activation, dropout, linear). A hidden layer after pooling is MobileNetV3's "efficient last stage":
    its capacity costs ``cin x hidden`` MACs once per image instead of once per pixel."""

    def __init__(self, spec: StudentSpec, num_classes: int):
        super().__init__()
        spec.validate()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.spec = copy.deepcopy(spec)
        self.preprocess = Preprocess(spec.input_size)
        w = spec.width
        cin = _channels(spec.stem, w)
        layers: list[nn.Module] = [conv_bn_act(3, cin, 3, spec.stem_stride, 1, spec.act, spec.rep, spec.rep_form)]
        for stage in spec.stages:
            cout = _channels(stage.out, w)
            for r in range(stage.repeats):
                stride = stage.stride if r == 0 else 1
                # a builder without ``rep`` still serves rep: 0
                extra = {"rep": spec.rep, "rep_form": spec.rep_form} if spec.rep else {}
                if stage.groups > 1:
                    extra["groups"] = stage.groups
                layers.append(BLOCKS[stage.block](cin, cout, stride, stage.expand, stage.kernel, spec.act, **extra))
                cin = cout
        if spec.head:
            head = _channels(spec.head, w)
            layers.append(conv_bn_act(cin, head, 1, 1, 1, spec.act, spec.rep, spec.rep_form))
            cin = head
        self.features = nn.Sequential(*layers)
        hidden: list[nn.Module] = []
        if spec.hidden:
            hidden = [nn.Linear(cin, spec.hidden), ACTIVATIONS[spec.act]()]
            cin = spec.hidden
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), *hidden, nn.Dropout(spec.dropout), nn.Linear(cin, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not parametrize.is_parametrized(m):  # merged branches init their own
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):  # the hidden layer as a conv (it feeds an activation), the last small
                if m is self.classifier[-1]:
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def student_spec(spec: str | dict | StudentSpec, input_size: int | None = None, width: float | None = None) -> StudentSpec:
    """Resolve a preset name, dict or spec into a fresh ``StudentSpec`` with optional overrides."""
    if isinstance(spec, str):
        resolved = lookup(spec, "student").builder()
    elif isinstance(spec, StudentSpec):
        resolved = copy.deepcopy(spec)
    elif isinstance(spec, dict):
        resolved = StudentSpec.from_dict(spec)
    else:
        raise TypeError(f"student spec must be a preset name, dict or StudentSpec, got {type(spec).__name__}")
    if input_size is not None:
        resolved.input_size = int(input_size)
    if width is not None:
        resolved.width = float(width)
    resolved.validate()
    return resolved
