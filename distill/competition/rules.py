"""Check a student against the competition's rules for the submitted model.

``check_rules(model, input_size)`` returns human-readable violations (empty list = compliant):

1. a subclass of a standard torch layer defined outside torch (the hook-based counter matches exact
   types, so it never sees such a layer; overriding ``forward`` makes it worse);
2. conv/linear/matmul arithmetic that no standard module owns (functional calls such as
   ``F.conv2d``), found by comparing fvcore's trace-based count per operator with what hooks on
   standard ``nn.Conv*``/``nn.Linear`` modules see;
3. modules defined in a model library other than torch and torchvision (timm and the like: their layers
   may escape a hook-based counter). torchvision models and their pretrained weights are allowed, and
   so are modules of your own with pretrained weights copied in;
4. a forward pass that fails at ``input_size``.

Rules that no inspection of a module can prove (a single forward pass per image, no pseudo-labels
from test images) are kept by the library's own predict and data code.
"""
from __future__ import annotations

import torch
from torch import nn

from distill.complexity import count_macs

FOREIGN_MODEL_LIBRARIES = frozenset({
    "timm", "efficientnet_pytorch", "efficientnet_lite_pytorch", "geffnet", "pretrainedmodels",
    "pytorchcv", "mmcv", "mmpretrain", "mmcls", "mmdet", "transformers", "segmentation_models_pytorch",
    "kornia", "onnx2torch", "keras", "tensorflow",
})
# fvcore operator names that are multiply-adds of conv/linear/matrix products
MAC_OPERATORS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm", "baddbmm", "linalg_vecdot")
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _is_torch_class(cls: type) -> bool:
    return cls.__module__.startswith("torch.")


def _standard_base(cls: type) -> type | None:
    """Nearest torch.nn layer class a user-defined class derives from (containers and Module excluded)."""
    for base in cls.__mro__[1:]:
        if base in (nn.Module, nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict):
            return None
        if _is_torch_class(base) and issubclass(base, nn.Module):
            return base
    return None


def _subclass_violations(model: nn.Module) -> list[str]:
    out = []
    for name, module in model.named_modules():
        cls = type(module)
        if _is_torch_class(cls):
            continue
        base = _standard_base(cls)
        if base is None:
            continue
        overridden = [m for m in ("forward", "_conv_forward") if getattr(cls, m, None) is not getattr(base, m, None)]
        what = f"overrides {', '.join(overridden)}" if overridden else "is not the exact torch class"
        out.append(f"{name or 'model'}: {cls.__name__} subclasses nn.{base.__name__} and {what}; "
                   f"the competition's hook-based counter only sees exact torch layers - use nn.{base.__name__} itself")
    return out


def _foreign_violations(model: nn.Module) -> list[str]:
    out = []
    for name, module in model.named_modules():
        root = type(module).__module__.split(".")[0]
        if root in FOREIGN_MODEL_LIBRARIES:
            out.append(f"{name or 'model'}: {type(module).__name__} comes from the model library '{root}'; "
                       "the competition allows torch and torchvision modules only")
    return out


def _hooked_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """MACs of exact-type standard conv/linear modules, by module name, from forward hooks."""
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def run(module: nn.Module, inputs, output):
            if isinstance(module, nn.Linear):
                macs = output.numel() * module.in_features
            elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                k = int(torch.tensor(module.kernel_size).prod())
                macs = inputs[0].numel() * module.out_channels // module.groups * k
            else:
                k = int(torch.tensor(module.kernel_size).prod())
                macs = output.numel() * module.in_channels // module.groups * k
            counts[name] = counts.get(name, 0) + int(macs)
        return run

    for name, module in model.named_modules():
        if type(module) in _CONV or type(module) is nn.Linear:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts


def _unowned_arithmetic(model: nn.Module, input_size: int) -> list[str]:
    report = count_macs(model, input_size)
    traced = sum(report.by_operator.get(op, 0) for op in MAC_OPERATORS)
    x = _probe_input(model, input_size)
    hooked = _hooked_macs(model, x)
    if traced <= sum(hooked.values()):
        return []

    def traced_in(name: str) -> int:
        return sum(report.by_module_and_operator.get(name, {}).get(op, 0) for op in MAC_OPERATORS)

    def hooked_in(name: str) -> int:
        return sum(v for k, v in hooked.items() if k == name or k.startswith(name + "."))

    # The smallest modules whose traced MACs exceed what the hooks inside them saw.
    suspects = [n for n in report.by_module_and_operator if n and traced_in(n) > hooked_in(n)]
    leaves = [n for n in suspects if not any(o.startswith(n + ".") for o in suspects)]
    where = f" (in {', '.join(leaves[:5])})" if leaves else ""
    return [f"{traced - sum(hooked.values()):,} conv/linear MACs are computed outside standard nn.Conv*/nn.Linear "
            f"modules{where}: functional calls such as F.conv2d, F.linear or matmul, which the competition's "
            f"hook-based counter does not see"]


def _probe_input(model: nn.Module, input_size: int) -> torch.Tensor:
    x = torch.zeros(1, 3, input_size, input_size)
    try:
        return x.to(next(model.parameters()).device)
    except StopIteration:
        return x


def check_rules(model: nn.Module, input_size: int) -> list[str]:
    """Every rule violation found in ``model`` at ``input_size`` (an empty list means compliant)."""
    violations = _subclass_violations(model) + _foreign_violations(model)
    was_training = model.training
    model.eval()
    try:
        violations += _unowned_arithmetic(model, input_size)
    except Exception as err:  # the model cannot even run at this size
        violations.append(f"forward pass fails at input {input_size}x{input_size}: {type(err).__name__}: {err}")
    finally:
        model.train(was_training)
    return violations
