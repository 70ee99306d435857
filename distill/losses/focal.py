"""Label losses: focal loss (class imbalance) and plain cross-entropy."""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from distill.choices import check_choice
from distill.losses.base import LabelLoss, Terms

AlphaRule = Literal["none", "inverse", "effective"]
ALPHA_RULES = get_args(AlphaRule)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: torch.Tensor | None = None,
               label_smoothing: float = 0.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-class focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` (with optional label smoothing of the
    log-likelihood term), mean over the batch of the per-sample losses times ``weights`` (if given).
    ``gamma=0``, no alpha, no smoothing = cross-entropy."""
    log_p = F.log_softmax(logits, dim=1)
    log_p_y = log_p.gather(1, target[:, None]).squeeze(1)
    if label_smoothing > 0:
        nll = -(1 - label_smoothing) * log_p_y - label_smoothing * log_p.mean(dim=1)
    else:
        nll = -log_p_y
    loss = (1 - log_p_y.exp()).clamp_min(0) ** gamma * nll
    if alpha is not None:
        loss = alpha.to(loss)[target] * loss
    if weights is not None:
        loss = weights.to(loss) * loss
    return loss.mean()


def class_alpha(counts: list[int], rule: str = "effective", beta: float = 0.999) -> torch.Tensor | None:
    """Per-class weights from class counts, normalised to mean 1: ``inverse`` frequency, ``effective``
    number of samples (Cui et al. 2019, (1-beta)/(1-beta^n)), or ``none`` (returns None)."""
    check_choice(rule, AlphaRule, "focal alpha rule")
    if rule == "none":
        return None
    n = torch.tensor([max(c, 1) for c in counts], dtype=torch.float64)
    weights = 1.0 / n if rule == "inverse" else (1 - beta) / (1 - beta**n)
    return (weights / weights.mean()).float()


class Focal(LabelLoss):
    """Args:
        gamma: focusing parameter >= 0 (0 = cross-entropy).
        alpha: class weights from the training class counts: ``none``, ``inverse`` or ``effective``.
        label_smoothing: in [0, 1).
    """

    def __init__(self, gamma: float = 2.0, alpha: AlphaRule = "effective", label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        check_choice(alpha, AlphaRule, "focal alpha")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.gamma, self.alpha_rule, self.label_smoothing = gamma, alpha, label_smoothing
        self.register_buffer("alpha", None, persistent=False)

    def set_class_counts(self, counts: list[int]) -> None:
        self.alpha = class_alpha(counts, self.alpha_rule)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> Terms:
        return {"focal": focal_loss(logits, labels, self.gamma, self.alpha, self.label_smoothing, weights)}


class CrossEntropy(LabelLoss):
    """Plain cross-entropy, optionally label-smoothed (what a teacher fine-tune uses)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> Terms:
        return {"ce": focal_loss(logits, labels, 0.0, None, self.label_smoothing, weights)}
