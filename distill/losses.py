"""Distillation and hard-label losses: plain functions plus thin ``nn.Module`` wrappers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ALPHA_RULES = ("none", "inverse", "effective")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2, mean over the batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: torch.Tensor | None = None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Multi-class focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` (with optional label smoothing of the
    log-likelihood term), mean over the batch. ``gamma=0``, no alpha, no smoothing = cross-entropy."""
    log_p = F.log_softmax(logits, dim=1)
    log_p_y = log_p.gather(1, target[:, None]).squeeze(1)
    if label_smoothing > 0:
        nll = -(1 - label_smoothing) * log_p_y - label_smoothing * log_p.mean(dim=1)
    else:
        nll = -log_p_y
    loss = (1 - log_p_y.exp()).clamp_min(0) ** gamma * nll
    if alpha is not None:
        loss = alpha.to(loss)[target] * loss
    return loss.mean()


def class_alpha(counts: list[int], rule: str = "effective", beta: float = 0.999) -> torch.Tensor | None:
    """Per-class weights from class counts, normalised to mean 1: ``inverse`` frequency, ``effective``
    number of samples (Cui et al. 2019, (1-beta)/(1-beta^n)), or ``none`` (returns None)."""
    if rule not in ALPHA_RULES:
        raise ValueError(f"focal alpha rule {rule!r}: choose one of {ALPHA_RULES}")
    if rule == "none":
        return None
    n = torch.tensor([max(c, 1) for c in counts], dtype=torch.float64)
    weights = 1.0 / n if rule == "inverse" else (1 - beta) / (1 - beta**n)
    return (weights / weights.mean()).float()


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0,
             beta: float = 8.0, temperature: float = 4.0, return_parts: bool = False):
    """Decoupled KD (Zhao et al. 2022): ``alpha * TCKD + beta * NCKD``.

    TCKD: KL between the binary (target, non-target) distributions; NCKD: KL between the distributions
    over non-target classes. Both scaled by T^2, mean over the batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    T = temperature
    mask = F.one_hot(target, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    b_s = torch.stack([p_s[mask], (p_s * ~mask).sum(1)], dim=1).clamp_min(1e-8)
    b_t = torch.stack([p_t[mask], (p_t * ~mask).sum(1)], dim=1).clamp_min(1e-8)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * T**2
    # non-target distributions: mask the target logit out with a large negative number
    big = 1000.0
    log_q_s = F.log_softmax(student_logits / T - big * mask, dim=1)
    log_q_t = F.log_softmax(teacher_logits / T - big * mask, dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s) * ~mask).sum(1).mean() * T**2
    total = alpha * tckd + beta * nckd
    return (total, tckd, nckd) if return_parts else total


class KDLoss(nn.Module):
    def __init__(self, temperature: float = 4.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, target=None):
        return kd_loss(student_logits, teacher_logits, self.temperature)


class DKDLoss(nn.Module):
    """DKD with a linear warm-up of its weight over ``warmup`` epochs (``set_epoch`` each epoch)."""

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: int = 5):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.alpha, self.beta, self.temperature, self.warmup = alpha, beta, temperature, warmup
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(self, student_logits, teacher_logits, target):
        scale = min((self.epoch + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        return scale * dkd_loss(student_logits, teacher_logits, target, self.alpha, self.beta, self.temperature)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("alpha", alpha if alpha is not None else None, persistent=False)

    def forward(self, logits, target):
        return focal_loss(logits, target, self.gamma, self.alpha, self.label_smoothing)


class DistillationLoss(nn.Module):
    """``alpha_kd * distill(student, teacher) + (1 - alpha_kd) * hard(student, labels)``.

    Without teacher logits only the hard-label term is used (plain classifier training)."""

    def __init__(self, distill: nn.Module, hard: nn.Module, alpha_kd: float = 0.9):
        super().__init__()
        if not 0 <= alpha_kd <= 1:
            raise ValueError(f"alpha_kd must be in [0, 1], got {alpha_kd}")
        self.distill, self.hard, self.alpha_kd = distill, hard, alpha_kd

    def forward(self, student_logits, target, teacher_logits=None) -> dict[str, torch.Tensor]:
        hard = self.hard(student_logits, target)
        if teacher_logits is None:
            return {"loss": hard, "hard": hard}
        soft = self.distill(student_logits, teacher_logits, target)
        return {"loss": self.alpha_kd * soft + (1 - self.alpha_kd) * hard, "hard": hard, "distill": soft}

