"""MACs (fvcore, and the competition's ptflops counter) and the competition score.

    python -m distill.complexity --student tiny --size 64
    python -m distill.complexity --all
"""
from __future__ import annotations

import argparse
import copy
import io
import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

F1_BASE = 0.8367
MACS_BASE = 13_878_369
# Modules the competition's counter left out of its total.
COMPETITION_IGNORED = [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU]


@dataclass
class MacsReport:
    """fvcore count at batch 1: ``total`` MACs, per-module MACs, per-operator MACs, uncounted operators."""

    total: int
    by_module: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    by_module_and_operator: dict[str, dict[str, int]] = field(default_factory=dict)


def _input(model: nn.Module, input_size: int | tuple[int, int]) -> torch.Tensor:
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    try:
        p = next(model.parameters())
        return torch.zeros(1, 3, h, w, dtype=p.dtype, device=p.device)
    except StopIteration:
        return torch.zeros(1, 3, h, w)


def count_macs(model: nn.Module, input_size: int | tuple[int, int]) -> MacsReport:
    """Count MACs with fvcore (one multiply-add = one MAC), batch 1, eval mode; the model is not changed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    was_training = model.training
    model.eval()
    try:
        analysis = FlopCountAnalysis(model, _input(model, input_size))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            total = int(analysis.total())
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            unsupported = dict(analysis.unsupported_ops())
            by_both = {k: {op: int(n) for op, n in v.items()} for k, v in analysis.by_module_and_operator().items()}
    finally:
        model.train(was_training)
    return MacsReport(total, by_module, by_operator, unsupported, by_both)


def competition_macs(model: nn.Module, input_size: int | tuple[int, int]) -> int:
    """MACs as the competition counted them: ptflops module hooks (pytorch backend, functional
    counting off), ReLU/ReLU6/LeakyReLU/PReLU/ELU ignored. Runs on a copy of the model."""
    from ptflops import get_model_complexity_info

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        macs, _ = get_model_complexity_info(
            model, (3, h, w), as_strings=False, print_per_layer_stat=False, ost=io.StringIO(),
            backend="pytorch", ignore_modules=COMPETITION_IGNORED,
            backend_specific_config={"count_functional": False},
        )
    if macs is None:
        raise RuntimeError(f"ptflops could not count {type(model).__name__} at {h}x{w}")
    return int(macs)


def competition_score(f1: float, macs: float, f1_base: float = F1_BASE, macs_base: float = MACS_BASE) -> float:
    """``macs / macs_base + s_f1``; lower is better and may be negative.

    ``s_f1`` is 1 when F1 < 0.5, ``1 - F1/F1_base`` when F1 < F1_base, else ``0.5 * (1 - F1/F1_base)``.
    """
    if not 0.0 <= f1 <= 1.0:
        raise ValueError(f"f1 must be in [0, 1], got {f1}")
    if macs < 0 or f1_base <= 0 or macs_base <= 0:
        raise ValueError("macs must be >= 0 and the baselines > 0")
    if f1 < 0.5:
        s_f1 = 1.0
    elif f1 < f1_base:
        s_f1 = 1.0 - f1 / f1_base
    else:
        s_f1 = 0.5 * (1.0 - f1 / f1_base)
    return macs / macs_base + s_f1


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module, input_size: int) -> dict:
    """Params, both MAC counts and the rules verdict of ``model`` at ``input_size``."""
    from distill.rules import check_rules

    fv = count_macs(model, input_size)
    return {
        "input_size": input_size,
        "params": count_params(model),
        "macs_fvcore": fv.total,
        "macs_competition": competition_macs(model, input_size),
        "uncounted_ops": fv.unsupported,
        "rule_violations": check_rules(model, input_size),
    }


def main(argv: list[str] | None = None) -> None:
    from models import PRESETS, build_model, build_student

    parser = argparse.ArgumentParser(description="Params, MACs (fvcore and competition counter) and rules verdict.")
    parser.add_argument("--student", default="tiny", help=f"preset ({', '.join(PRESETS)}) or teacher name")
    parser.add_argument("--size", type=int, default=None, help="input size in px (default: the model's own)")
    parser.add_argument("--num-classes", type=int, default=9)
    parser.add_argument("--width", type=float, default=None, help="width multiplier for a student preset")
    parser.add_argument("--all", action="store_true", help="table of every student preset")
    args = parser.parse_args(argv)

    names = list(PRESETS) if args.all else [args.student]
    print(f"{'model':<20}{'size':>6}{'params':>10}{'fvcore MACs':>14}{'ptflops MACs':>14}  rules")
    for name in names:
        if name in PRESETS:
            model = build_student(name, args.num_classes, input_size=args.size, width=args.width)
        else:
            model = build_model(name, args.num_classes, weights=None, input_size=args.size)
        size = args.size or model.preprocess.input_size
        d = describe(model, size)
        verdict = "ok" if not d["rule_violations"] else "; ".join(d["rule_violations"])
        print(f"{name:<20}{size:>6}{d['params']:>10,}{d['macs_fvcore']:>14,}{d['macs_competition']:>14,}  {verdict}")


if __name__ == "__main__":
    main()
