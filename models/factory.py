"""The one model factory: a student preset, a student spec, a torchvision backbone cut after a block, a
pruned model, or a named (pretrained) classifier, by definition.

    create_model("tiny", 9)                                           # student preset
    create_model({"input_size": 64, "stem": 8, "stages": [...]}, 9)   # student spec
    create_model({"backbone": "shufflenet_v2_x0_5", "blocks": 4, "input_size": 64}, 9, weights="DEFAULT")
    create_model("efficientnet_lite0", 9, weights="DEFAULT")          # named model (torchvision names too)

``model_definition`` turns what a user wrote into the plain-data definition a checkpoint stores, so
``create_model(definition, num_classes)`` rebuilds exactly the same network (then its state dict loads).
"""
from __future__ import annotations

import copy
from typing import Any

from torch import nn

from .backbones import backbone_student
from .common import Preprocess
from .pretrained import load_weights_file, named_model
from .pruned import restore_shapes
from .registry import is_registered, lookup
from .students import Student, StudentSpec, student_spec

ModelDef = str | dict[str, Any] | StudentSpec


def kind(model: ModelDef) -> str:
    """``student``, ``named``, ``backbone`` or ``pruned``."""
    if isinstance(model, dict):
        for key in ("pruned", "backbone", "name"):
            if key in model:
                return key if key != "name" else "named"
        return "student"
    if isinstance(model, StudentSpec) or is_registered(model, "student"):
        return "student"
    return "named"


def model_definition(model: ModelDef, input_size: int | None = None, width: float | None = None,
                     detail_size: int | None = None) -> dict[str, Any]:
    """Plain-data definition of ``model`` with the overrides applied: a full student spec dict,
    ``{"name", "input_size"}`` for a named model (``"detail_size"`` too when set: ``Preprocess``),
    ``{"backbone", "blocks", "input_size"}``, or ``{"pruned": <definition>, "shapes": ...}``."""
    what = kind(model)
    if detail_size is not None and what != "named":
        raise ValueError(f"detail_size applies to named (teacher) models, not to {model!r}")
    if what == "student":
        return student_spec(model, input_size, width).to_dict()
    if width is not None:
        raise ValueError(f"width applies to student presets and specs, not to {model!r}")
    if what in ("backbone", "pruned"):
        definition = copy.deepcopy(model)
        if input_size is not None:
            target = definition if what == "backbone" else definition["pruned"]
            target["input_size"] = int(input_size)
        return definition
    name = lookup(model["name"] if isinstance(model, dict) else model).name
    given = model if isinstance(model, dict) else {}
    size = input_size if input_size is not None else given.get("input_size")
    detail = detail_size if detail_size is not None else given.get("detail_size")
    return {"name": name, "input_size": size, **({"detail_size": int(detail)} if detail is not None else {})}


def create_model(model: ModelDef, num_classes: int, weights: str | None = None, input_size: int | None = None,
                 width: float | None = None, detail_size: int | None = None) -> nn.Module:
    """Build a model with a ``.preprocess`` (input size, mean, std; ``detail_size`` for a named model).

    ``weights``: for a named model or a backbone a torchvision weights name (``DEFAULT`` ...) or a file of
    the full model; for a student or a pruned model a file or None (students start from random weights).
    The classifier layer may differ in shape."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    definition = model_definition(model, input_size, width, detail_size)
    what = kind(definition)
    if what == "pruned":  # weights: a file of the pruned network (what distill prune writes)
        net = restore_shapes(create_model(definition["pruned"], num_classes), definition["shapes"])
        if weights is not None:
            load_weights_file(net, weights)
        return net
    if what == "backbone":
        return backbone_student(definition["backbone"], int(definition["blocks"]), num_classes,
                                definition.get("input_size"), weights)
    if what == "named":
        net = named_model(definition["name"], num_classes, weights)
        size = definition["input_size"] if definition["input_size"] is not None else net.preprocess.input_size
        net.preprocess = Preprocess(int(size), net.preprocess.mean, net.preprocess.std, definition.get("detail_size"))
        return net
    net = Student(StudentSpec.from_dict(definition), num_classes)
    if weights is not None:
        load_weights_file(net, weights)
    return net
