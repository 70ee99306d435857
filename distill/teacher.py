"""The frozen teacher: which model, its weights, its input size and the precision of its forward passes."""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
        cross_fit: the files of ``weights`` are cross-fitted teachers: the one at position k was fine-tuned without
            the training images of fold k (``data.cross_fit_fold: k`` of ``len(weights)`` folds), and in the
            teacher-output cache it alone labels those images, which it never trained on (each view runs through
            its image's member only: the fill costs one teacher's forwards). On images no member trained on
            (validation, held-out) it is the members' mean. Online (without the cache) it is refused: the mean
            would label images its members trained on. The pipeline's recipes give the fine-tunes as
            ``teachers: [{data: {cross_fit_fold: 0}}, {data: {cross_fit_fold: 1}}]`` (``recipes/trashnet_crossfit``).
    """

    name: str = "efficientnet_lite0"
    weights: str | list[str] | None = None
    input_size: int | None = None
    precision: str = "auto"
    flip_average: bool = False
    detail_size: int | None = None
    cross_fit: bool = False

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_detail_size(self.detail_size, "teacher.detail_size")  # named now, before any model is built
        try:
            lookup(self.name, "pretrained")
        except UnknownModelError as err:
            raise UnknownModelError(f"teacher.name={self.name!r}: {err}") from None

    def build(self, num_classes: int) -> nn.Module:
        if self.cross_fit:
            return CrossFitted([self._member(num_classes, w, fold) for fold, w in enumerate(self.cross_fit_weights())])
        if not isinstance(self.weights, list):
            return self._member(num_classes, self.weights)
        if not self.weights:
            raise ValueError("teacher.weights=[]: give a weights file, or a list of them for an ensemble")
        members = [self._member(num_classes, weights) for weights in self.weights]
        return members[0] if len(members) == 1 else MeanLogits(members)

    def cross_fit_weights(self) -> list[str]:
        """The cross-fitted members' files, fold by fold (``cross_fit``): two or more."""
        if not isinstance(self.weights, list) or len(self.weights) < 2:
            raise ValueError(f"teacher.cross_fit: true needs teacher.weights to list one fine-tune per fold (2 or more, "
                             f"fold 0 first), got {self.weights!r}")
        return self.weights

    def _member(self, num_classes: int, weights: str | None, fold: int | None = None) -> nn.Module:
        record = recorded(weights)  # read once for every check below
        if weights is not None:
            recorded_detail = recorded_detail_size(record)
            if recorded_detail != self.detail_size:
                raise ValueError(f"teacher.weights={weights} was fine-tuned with detail_size={recorded_detail} but "
                                 f"teacher.detail_size={self.detail_size}: set teacher.detail_size: "
                                 f"{'null' if recorded_detail is None else recorded_detail} (the teacher is shown "
                                 "what it learnt from)")
        if fold is not None:
            folds = len(self.weights)
            recorded_fold = record.get("cross_fit")
            if recorded_fold != {"fold": fold, "folds": folds}:
                raise ValueError(f"teacher.weights[{fold}]={weights} is not the fine-tune without fold {fold} of {folds} "
                                 f"(it records cross_fit={recorded_fold}): list the fold teachers in fold order, each "
                                 "fine-tuned with data.cross_fit_fold: <its position> and data.cross_fit_folds: "
                                 f"{folds}")
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


class CrossFitted(MeanLogits):
    """Cross-fitted teachers (``TeacherSpec.cross_fit``): member k never trained on the training images of fold k.
    Its forward is the members' mean (for images none of them trained on: validation, held-out); the cache fill
    runs each training image's views through the member that left the image out (``FrozenTeacher.member``)."""


def recorded_detail_size(record: dict[str, Any]) -> int | None:
    """The ``detail_size`` a weights file's record (``recorded``) gives its model; None when it records none."""
    definition = record.get("model", record.get("model_def"))  # model.pt / a Lightning .ckpt
    return definition.get("detail_size") if isinstance(definition, dict) else None


def recorded(weights: str | None) -> dict[str, Any]:
    """What a weights file of this library records beside its weights (a pipeline ``model.pt``: its definition,
    ``cross_fit`` fold...; a Lightning ``.ckpt``: ``model_def``), tensors left on disk; {} for a plain state dict,
    a torchvision weights name, or no file."""
    if weights is None or not is_weights_file(weights) or not Path(weights).is_file():
        return {}  # a missing or damaged file is named by the loading that follows
    mmap = zipfile.is_zipfile(weights)  # tensors stay on disk; torch's legacy (non-zip) format cannot be mapped
    try:
        data = torch.load(weights, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


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

    @property
    def cross_fit(self) -> bool:
        """Whether it is cross-fitted teachers (``CrossFitted``: each training image has its own member)."""
        return isinstance(self.model, CrossFitted)

    def to(self, device: torch.device | str) -> "FrozenTeacher":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged(self.forward)(images) if self.flip_average else self.forward(images)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits for a uint8 batch, one view each (no flip averaging)."""
        return self._run(self.model, images)

    def member(self, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Cross-fitted teachers' member ``k`` alone, called as the teacher is (uint8 batch -> float32 logits,
        flip-averaged when the teacher is)."""
        if not self.cross_fit:
            raise ValueError("member: the teacher is not cross-fitted (teacher.cross_fit)")
        module = self.model.members[k]

        @torch.no_grad()
        def forward(images: torch.Tensor) -> torch.Tensor:
            return self._run(module, images)

        return flip_averaged(forward) if self.flip_average else forward

    def _run(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        x = model_input(images, self.model.preprocess)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return model(x).float()
