"""The registered student presets, smallest first: each a ``StudentSpec`` of ``models.students`` (the MACs each
docstring gives, fvcore at the preset's input size, are checked by the tests)."""
from __future__ import annotations

from dataclasses import replace

from .registry import register_model
from .students import Stage, StudentSpec


def _s(block: str, out: int, stride: int = 1, repeats: int = 1, expand: float = 1.0, kernel: int = 3) -> Stage:
    return Stage(block, out, stride, repeats, expand, kernel)


@register_model(kind="student")
def pico() -> StudentSpec:
    """106,876 MACs (fvcore, 9 classes; 106,684 with 6) at 64 px, the 0.1 MMAC budget: ``nano``'s first four
    stages behind a 3 x 3 stride-3 stem (every input pixel seen once, a 22 x 22 first map); the 64-px views of a
    cache made for ``nano`` or ``tiny`` serve it unchanged."""
    return StudentSpec(64, stem=4, stem_stride=3, stages=[_s("ds", 8, 2), _s("ds", 16, 2), _s("ds", 32, 2), _s("ds", 64)])


@register_model(kind="student")
def pico_orepa() -> StudentSpec:
    """``pico`` trained with ``rep: 2`` merged branches (as ``tiny_orepa``), folded at export into plain ``pico``
    (106,876 MACs, 9 classes)."""
    return replace(pico(), rep=2, rep_form="linear")


@register_model(kind="student")
def nano() -> StudentSpec:
    """325,728 MACs (fvcore, 9 classes) at 64 px: depthwise-separable stages, narrow stem."""
    return StudentSpec(64, stem=4, stages=[_s("ds", 8, 2), _s("ds", 16, 2), _s("ds", 32, 2), _s("ds", 64), _s("ds", 96)])


@register_model(kind="student")
def nano_orepa() -> StudentSpec:
    """``nano`` trained with ``rep: 2`` branches in the ``linear`` form (as ``tiny_orepa``), folded at export into plain
    ``nano``: 325,728 MACs (fvcore, 9 classes)."""
    return replace(nano(), rep=2, rep_form="linear")


@register_model(kind="student")
def micro() -> StudentSpec:
    """539,264 MACs (fvcore, 9 classes) at 64 px."""
    return StudentSpec(64, stem=8, stages=[_s("ds", 16, 2), _s("ds", 32, 2), _s("ds", 64, 2), _s("ds", 128)])


@register_model(kind="student")
def tiny() -> StudentSpec:
    """911,744 MACs (fvcore, 9 classes; 911,360 with 6) at 64 px: the default student for a 1 MMAC budget."""
    return StudentSpec(64, stem=8, stages=[_s("ds", 24, 2), _s("ds", 48, 2), _s("ds", 48), _s("ds", 96, 2),
                                           _s("ds", 128)])


@register_model(kind="student")
def tiny_hidden() -> StudentSpec:
    """980,736 MACs (fvcore, 9 classes; 979,200 with 6) at 64 px: ``tiny`` plus a 512-unit Linear + ReLU after
    pooling (MobileNetV3's last stage), which costs its size once per image instead of once per pixel."""
    return replace(tiny(), hidden=512)


@register_model(kind="student")
def tiny96() -> StudentSpec:
    """911,744 MACs (fvcore, 9 classes; 911,360 with 6) at 96 px: ``tiny``'s layers behind a 3x3 stride-3 stem, so
    the same 32 x 32 first feature map (and the same MACs) is computed from 2.25x the input pixels."""
    return replace(tiny(), input_size=96, stem_stride=3)


@register_model(kind="student")
def tiny_rep() -> StudentSpec:
    """``tiny`` trained with ``rep: 2`` (every conv + BN as two k x k branches, a 1 x 1 branch and an identity BN),
    folded at export into plain ``tiny``: 911,744 MACs (fvcore, 9 classes; 911,360 with 6) at 64 px deployed, 49,726
    parameters while training (6 classes); a training step costs about twice plain ``tiny``'s."""
    return replace(tiny(), rep=2)


@register_model(kind="student")
def tiny_orepa() -> StudentSpec:
    """``tiny_rep``'s branches trained in the ``linear`` form (OREPA): scaled kernels merged before one conv + BN per
    layer, so a training step costs about what plain ``tiny``'s does; folded at export into plain ``tiny``
    (911,744 MACs, 9 classes)."""
    return replace(tiny(), rep=2, rep_form="linear")


@register_model(kind="student")
def tiny96_orepa() -> StudentSpec:
    """``tiny96`` (``tiny``'s layers behind a 3 x 3 stride-3 stem at 96 px) trained with ``tiny_orepa``'s merged
    branches, folded at export into plain ``tiny96``: 911,744 MACs (fvcore, 9 classes), 2.25x the pixels of ``tiny``."""
    return replace(tiny96(), rep=2, rep_form="linear")


@register_model(kind="student")
def tiny96_hidden_orepa() -> StudentSpec:
    """``tiny96_orepa`` plus a 256-unit Linear + ReLU after pooling (as ``tiny_hidden``, half its width): a parameter
    after pooling costs one MAC, a conv's one per pixel of its map (33,792 more of each with 6 classes); folded at
    export into plain ``tiny96`` + the hidden layer: 945,664 MACs (fvcore, 9 classes)."""
    return replace(tiny96_orepa(), hidden=256)


@register_model(kind="student")
def small() -> StudentSpec:
    """2,086,128 MACs (fvcore, 9 classes) at 80 px."""
    return StudentSpec(80, stem=12, stages=[_s("ds", 24, 2), _s("ds", 48, 2), _s("ds", 48), _s("ds", 96, 2),
                                            _s("ds", 96), _s("ds", 192)])


@register_model(kind="student")
def base() -> StudentSpec:
    """5,512,464 MACs (fvcore, 9 classes) at 112 px: inverted residuals in the last stages."""
    return StudentSpec(112, stem=12, stages=[_s("ds", 24, 2), _s("ds", 48, 2), _s("ds", 48), _s("ds", 96, 2),
                                             _s("ir", 96, 1, 1, 2), _s("ds", 192)])
