"""The frozen teacher: which model, its weights, its input size and the precision of its forward passes."""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from distill.models import UnknownModelError, create_model
from distill.models.common import check_detail_size
from distill.models.pretrained import is_weights_file
from distill.models.registry import lookup
from distill.precision import resolve
from distill.preprocess import channels_last, model_input

PRECISIONS = ("32", "bf16", "auto")


def check_precision(precision: str, option: str = "teacher.precision") -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{option}={precision!r}: choose one of {PRECISIONS}")


@dataclass
class TeacherSpec:
    """Args:
        name: ``efficientnet_lite0`` (``_lite1``, ``_lite2``) or a torchvision classifier name; the network
            the fine-tune trained (the pipeline checks it).
        weights: the fine-tuned teacher's weights file (``model.pt`` of the pipeline, or a ``.ckpt``); a list of
            files makes an ensemble: one model of ``name`` per file, its logits the mean of theirs (``MeanLogits``;
            one forward each, in the cache fill or online). The rules bind the submitted student only.
        input_size: its input size (default: the model's own).
        precision: ``auto`` (bf16 where this machine runs it fast, see ``distill.precision``), ``32``, or
            ``bf16`` (bfloat16 autocast; several times slower than float32 on CPUs without AVX512-BF16/AMX);
            logits are always float32.
        flip_average: the teacher's logits are the mean of its logits on the image and on its mirror image
            (a two-view ensemble: twice the teacher's forward passes, in the cache fill or online). The rules
            bind the submitted student only; the teacher may average what it likes.
        detail_size: show the teacher only the detail of a view this size (each view shrunk to it, as the
            student's view is made, then resized to ``input_size``): the teacher's targets then rest on what the
            student can see. Use it with a teacher fine-tuned the same way (the fine-tune's ``detail_size``).
    """

    name: str = "efficientnet_lite0"
    weights: str | list[str] | None = None
    input_size: int | None = None
    precision: str = "auto"
    flip_average: bool = False
    detail_size: int | None = None

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_detail_size(self.detail_size, "teacher.detail_size")  # named now, before any model is built
        try:
            lookup(self.name, "pretrained")
        except UnknownModelError as err:
            raise UnknownModelError(f"teacher.name={self.name!r}: {err}") from None

    def build(self, num_classes: int) -> nn.Module:
        if not isinstance(self.weights, list):
            return self._member(num_classes, self.weights)
        if not self.weights:
            raise ValueError("teacher.weights=[]: give a weights file, or a list of them for an ensemble")
        members = [self._member(num_classes, weights) for weights in self.weights]
        return members[0] if len(members) == 1 else MeanLogits(members)

    def _member(self, num_classes: int, weights: str | None) -> nn.Module:
        if weights is not None:
            recorded = recorded_detail_size(weights)
            if recorded != self.detail_size:
                raise ValueError(f"teacher.weights={weights} was fine-tuned with detail_size={recorded} but "
                                 f"teacher.detail_size={self.detail_size}: set teacher.detail_size: "
                                 f"{'null' if recorded is None else recorded} (the teacher is shown what it learnt from)")
        return create_model(self.name, num_classes, weights=weights, input_size=self.input_size,
                            detail_size=self.detail_size)


class MeanLogits(nn.Module):
    """A teacher ensemble: the mean of its members' logits. The members share one input (their ``preprocess``:
    size and normalisation), so each view is prepared once and every member sees the same pixels."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        prepared = {repr(getattr(m, "preprocess", None)) for m in members}
        if len(prepared) > 1:
            raise ValueError(f"teacher ensemble: its members prepare their input differently ({sorted(prepared)}); "
                             "give them one input_size and detail_size")
        self.members = nn.ModuleList(members)
        self.preprocess = members[0].preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


def recorded_detail_size(weights: str) -> int | None:
    """The ``detail_size`` a weights file of this library records for its model (a pipeline ``model.pt`` or a
    Lightning ``.ckpt``); None for a plain state dict, a torchvision weights name, or none recorded."""
    if not is_weights_file(weights) or not Path(weights).is_file():
        return None  # a missing or damaged file is named by the loading that follows
    mmap = zipfile.is_zipfile(weights)  # tensors stay on disk; torch's legacy (non-zip) format cannot be mapped
    try:
        data = torch.load(weights, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:
        return None
    definition = data.get("model", data.get("model_def")) if isinstance(data, dict) else None
    return definition.get("detail_size") if isinstance(definition, dict) else None


def flip_averaged(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward`` on a ``B x 3 x H x W`` batch, averaged with ``forward`` on its horizontal mirror: one batch of
    ``2B`` images, so the teacher's forward runs once per call."""

    def averaged(images: torch.Tensor) -> torch.Tensor:
        both = forward(torch.cat([images, images.flip(-1)]))
        return (both[:len(images)] + both[len(images):]) / 2

    return averaged


def frozen_teacher(source: "TeacherSpec | FrozenTeacher", num_classes: int) -> "FrozenTeacher":
    """The frozen teacher a ``TeacherSpec`` describes (built now), or ``source`` itself when it is one already."""
    if isinstance(source, FrozenTeacher):
        return source
    if source.weights is None:
        warnings.warn("the teacher has no weights (teacher.weights is null): distilling from noise", stacklevel=2)
    return FrozenTeacher(source.build(num_classes), source.precision, source.flip_average)


class FrozenTeacher:
    """A teacher model in eval mode with no gradients; call it on a uint8 batch for float32 logits.

    Deliberately not an ``nn.Module``: it stays out of the student's module tree, optimiser, DDP wrapper
    and checkpoints. ``precision="auto"`` is resolved for the device the model is on. ``flip_average``: as
    ``TeacherSpec``'s."""

    def __init__(self, model: nn.Module, precision: str = "32", flip_average: bool = False):
        if not hasattr(model, "preprocess"):
            raise ValueError("a teacher module needs a .preprocess (distill.models.Preprocess) attribute")
        check_precision(precision)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = channels_last(model.eval())
        self.requested_precision = precision
        self.flip_average = flip_average

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """The precision its forward passes run in on its current device (``32`` or ``bf16``)."""
        return resolve(self.requested_precision, self.device.type)

    @property
    def preprocess(self):
        return self.model.preprocess

    def to(self, device: torch.device | str) -> "FrozenTeacher":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged(self.forward)(images) if self.flip_average else self.forward(images)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits for a uint8 batch, one view each (no flip averaging)."""
        x = model_input(images, self.model.preprocess)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(x).float()
