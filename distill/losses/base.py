"""The two kinds of loss a module combines, each returning named terms (their sum is the loss).

A distillation method is one file with one ``DistillLoss`` subclass; LightningCLI builds it from
``class_path``/``init_args`` in the YAML (``model.distill_loss``), so a new method needs no change to the
module. Each loss checks its own arguments when constructed.
"""
from __future__ import annotations

import torch
from torch import nn

Terms = dict[str, torch.Tensor]


class DistillLoss(nn.Module):
    """``forward(student_logits, teacher_logits, labels) -> {term: scalar}``; the terms are summed."""

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> Terms:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch (for schedules such as DKD's warm-up)."""


class LabelLoss(nn.Module):
    """``forward(logits, labels, weights=None) -> {term: scalar}``: the supervised (hard-label) term, the
    batch mean of per-sample losses, each multiplied by its ``weights`` entry when given (mixed images
    count each of their two labels with the share of that image)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> Terms:
        raise NotImplementedError

    def set_class_counts(self, counts: list[int]) -> None:
        """Training images per class, given by the module before training (class weighting)."""


def check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score of each row (logit standardization, Sun et al., CVPR 2024): zero mean, unit std over classes."""
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + eps)
