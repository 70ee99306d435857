"""The one model factory: a student preset, a student spec or a named (pretrained) model, by definition.

    create_model("tiny", 9)                                  # student preset
    create_model({"input_size": 64, "stem": 8, "stages": [...]}, 9)
    create_model("efficientnet_lite0", 9, weights="DEFAULT") # named model (torchvision names too)

``model_definition`` turns what a user wrote into the plain-data definition a checkpoint stores, so
``create_model(definition, num_classes)`` rebuilds exactly the same network.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from models.common import Preprocess
from models.pretrained import NAMED_MODELS, load_weights_file, named_model
from models.students import PRESETS, Student, StudentSpec, student_spec

ModelDef = str | dict[str, Any] | StudentSpec


def _is_student(model: ModelDef) -> bool:
    if isinstance(model, dict):
        return "name" not in model
    return isinstance(model, StudentSpec) or model in PRESETS


def model_definition(model: ModelDef, input_size: int | None = None, width: float | None = None) -> dict[str, Any]:
    """Plain-data definition of ``model`` with the overrides applied: a full student spec dict, or
    ``{"name": ..., "input_size": ...}`` for a named model."""
    if _is_student(model):
        return student_spec(model, input_size, width).to_dict()
    name = model["name"] if isinstance(model, dict) else model
    if not isinstance(name, str) or name not in NAMED_MODELS:
        raise ValueError(f"model={model!r}: not a student preset ({sorted(PRESETS)}), a student spec dict, "
                         "'efficientnet_lite0' or a torchvision classifier name (e.g. resnet18)")
    if width is not None:
        raise ValueError(f"width applies to student presets and specs, not to {name!r}")
    size = input_size if input_size is not None else (model.get("input_size") if isinstance(model, dict) else None)
    return {"name": name, "input_size": size}


def create_model(model: ModelDef, num_classes: int, weights: str | None = None, input_size: int | None = None,
                 width: float | None = None) -> nn.Module:
    """Build a model with a ``.preprocess`` (input size, mean, std).

    ``weights``: for a named model a torchvision weights name (``DEFAULT`` ...) or a file; for a student a
    file or None (students start from random weights). The classifier layer may differ in shape."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    definition = model_definition(model, input_size, width)
    if "name" in definition:
        net = named_model(definition["name"], num_classes, weights)
        if definition["input_size"] is not None:
            net.preprocess = Preprocess(int(definition["input_size"]), net.preprocess.mean, net.preprocess.std)
        return net
    net = Student(StudentSpec.from_dict(definition), num_classes)
    if weights is not None:
        load_weights_file(net, weights)
    return net
