"""What every model in this library carries: its expected input size and normalisation."""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_DETAIL_SIZE = 8


def check_detail_size(detail_size: int | None, option: str = "detail_size") -> None:
    """The one rule for ``detail_size`` (``Preprocess``'s and the teacher option's): None or >= 8 pixels."""
    if detail_size is not None and detail_size < MIN_DETAIL_SIZE:
        raise ValueError(f"{option}={detail_size} is too small (>= {MIN_DETAIL_SIZE}, or null for no shrinking)")


@dataclass(frozen=True, repr=False)
class Preprocess:
    """Input contract of a model: square side in pixels and per-channel mean/std (0..1 scale).

    ``detail_size``: the finest detail the model is shown: its input is first shrunk to ``detail_size`` (as a
    student's view at that size is made), then resized to ``input_size``. A teacher that sees what a 64-px
    student sees, at the input size its pretrained features were made for. None: no shrinking."""

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    detail_size: int | None = None

    def __post_init__(self) -> None:
        check_detail_size(self.detail_size)

    def __repr__(self) -> str:  # detail_size only when set: teacher-cache keys hash this text
        detail = f", detail_size={self.detail_size!r}" if self.detail_size is not None else ""
        return f"Preprocess(input_size={self.input_size!r}, mean={self.mean!r}, std={self.std!r}{detail})"
