"""Everything about the competition in one place: the score and its constants, the competition's own
MAC counter, and the rules the submitted model must obey.

    distill complexity --all            # every student preset: params, both MAC counts, rules verdict
    distill complexity --model tiny --size 80
    distill complexity runs/demo/student_kd/seed_0/model.pt
"""
from __future__ import annotations

import argparse
from typing import Any

from torch import nn

from distill.competition.counter import COMPETITION_IGNORED, competition_macs
from distill.competition.rules import check_rules
from distill.competition.score import F1_BASE, MACS_BASE, competition_score
from distill.complexity import count_macs, count_params

__all__ = ["F1_BASE", "MACS_BASE", "COMPETITION_IGNORED", "competition_score", "competition_macs", "check_rules",
           "describe", "run"]


def describe(model: nn.Module, input_size: int) -> dict[str, Any]:
    """Params, both MAC counts and the rules verdict of ``model`` at ``input_size``, in its deployed form (a student
    trained with ``rep`` branches folded: ``distill.models.reparameterize``)."""
    from distill.models import reparameterize

    model = reparameterize(model)
    fv = count_macs(model, input_size)
    return {
        "input_size": input_size,
        "params": count_params(model),
        "macs_fvcore": fv.total,
        "macs_competition": competition_macs(model, input_size),
        "uncounted_ops": fv.unsupported,
        "rule_violations": check_rules(model, input_size),
    }


def run(args: argparse.Namespace) -> None:
    """``distill complexity`` (arguments: ``distill.command_args.complexity_parser``)."""
    from pathlib import Path

    from distill.checkpoint import load_trained
    from distill.models import create_model, list_models

    looks_like_file = Path(args.model).suffix in (".pt", ".ckpt", ".pth") or "/" in args.model
    model_file = args.model_file or (Path(args.model) if looks_like_file else None)  # load_trained names a missing one
    names = [str(model_file)] if model_file else list_models("student") if args.all else [args.model]
    print(f"{'model':<20}{'size':>6}{'params':>10}{'fvcore MACs':>14}{'ptflops MACs':>14}  rules")
    for name in names:
        if model_file is not None:  # as trained: its own classes and input size
            model = load_trained(model_file)[0]
        else:
            try:
                model = create_model(name, args.num_classes, input_size=args.size, width=args.width)
            except ValueError as err:
                raise ValueError(f"--model {name}: {err}") from None
        size = args.size or model.preprocess.input_size
        d = describe(model, size)
        verdict = "ok" if not d["rule_violations"] else "; ".join(d["rule_violations"])
        print(f"{name:<20}{size:>6}{d['params']:>10,}{d['macs_fvcore']:>14,}{d['macs_competition']:>14,}  {verdict}")
