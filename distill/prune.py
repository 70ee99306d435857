"""Structured pruning of a trained network to a MAC budget, with Torch-Pruning (dependency-graph aware:
the channels of coupled layers, residual adds, depthwise convs and concatenations are removed together).

    distill prune runs/x/student_kd/seed_0/model.pt --macs 920000 --out runs/x/pruned.pt

Channels are ranked by the L1 norm of their weights and removed at the same ratio in every layer; the
ratio is found by bisection so that the fvcore MAC count lands at most ``tolerance`` below the budget.
The result is plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` layers of fewer channels: it obeys
the rules and exports like any student. Fine-tune it afterwards with the definition the file records and the
file as weights: ``student: <torch.load("pruned.pt")["model"]>`` and ``weights: pruned.pt`` (a recipe's
``prune.yaml`` makes the pipeline do both).
"""
from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.checkpoint import load_trained, save_trained
from distill.competition import check_rules, competition_macs
from distill.complexity import count_macs
from distill.console import say
from distill.models import classifier_name, layer_shapes


@dataclass
class PruneResult:
    model: nn.Module
    ratio: float
    macs_before: int
    macs_after: int


def prune_uniform(model: nn.Module, ratio: float, input_size: int) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of the channels of every prunable layer removed (L1 importance);
    the classifier's outputs are kept."""
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    head = pruned.get_submodule(classifier_name(pruned))
    example = torch.zeros(1, 3, input_size, input_size)
    pruner = tp.pruner.MetaPruner(pruned, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[head], round_to=None)
    pruner.step()
    return pruned


def prune_to_macs(model: nn.Module, macs: int, input_size: int, tolerance: float = 0.02,
                  steps: int = 14) -> PruneResult:
    """Bisect the uniform pruning ratio until fvcore's count is in ``[macs * (1 - tolerance), macs]``."""
    from tqdm.auto import tqdm

    before = count_macs(model, input_size).total
    if macs >= before:
        raise ValueError(f"--macs {macs:,} is not below the model's {before:,} MACs: nothing to prune")
    low, high, best = 0.0, 0.95, None
    with tqdm(total=steps, desc=f"pruning to {macs:,} MACs", unit="try") as bar:
        for _ in range(steps):
            ratio = (low + high) / 2
            candidate = prune_uniform(model, ratio, input_size)
            count = count_macs(candidate, input_size).total
            bar.set_postfix(ratio=f"{ratio:.3f}", macs=f"{count:,}")
            bar.update()
            if count > macs:
                low = ratio
            else:
                high = ratio
                best = PruneResult(candidate, ratio, before, count)
                if count >= macs * (1 - tolerance):
                    bar.total = bar.n  # done early: the bar ends full, not at the try it stopped on
                    break
    if best is None:
        raise ValueError(f"could not prune to {macs:,} MACs (the smallest reachable is above it)")
    if best.macs_after < macs * (1 - tolerance):
        say(f"pruning: {best.macs_after:,} MACs is more than {tolerance:.0%} below the budget {macs:,} "
            "(the next larger ratio step is over it)")
    return best


def prune_file(model_file: str | Path, macs: int, out: str | Path, tolerance: float = 0.02) -> PruneResult:
    """Prune the trained model in ``model_file`` to ``macs`` and write it to ``out`` (a model file whose
    definition rebuilds the pruned structure)."""
    model, meta = load_trained(model_file)
    size = meta["input_size"]
    result = prune_to_macs(model, macs, size, tolerance)
    definition = {"pruned": meta["model"], "shapes": layer_shapes(result.model)}
    save_trained(out, result.model, definition, meta["num_classes"], meta["class_names"], base_size=meta["base_size"])
    violations = check_rules(result.model, size)
    say(f"pruned {result.ratio:.3f} of the channels: {result.macs_before:,} -> {result.macs_after:,} MACs (fvcore), "
        f"{competition_macs(result.model, size):,} (competition counter); rules: "
        f"{'ok' if not violations else '; '.join(violations)}; wrote {out}")
    return result


def run(args: argparse.Namespace) -> None:
    """``distill prune`` (arguments: ``distill.command_args.prune_parser``)."""
    prune_file(args.model, args.macs, args.out, args.tolerance)
