"""Decoupled KD (Zhao et al., CVPR 2022): ``alpha * TCKD + beta * NCKD``, with a linear warm-up."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillLoss, Terms, check_temperature, standardize


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each scaled by T^2 and averaged over the batch.

    TCKD: KL between the binary (target, non-target) distributions; NCKD: KL between the distributions
    over the non-target classes."""
    check_temperature(temperature)
    T = temperature
    mask = F.one_hot(labels, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    b_s = torch.stack([p_s[mask], (p_s * ~mask).sum(1)], dim=1).clamp_min(1e-8)
    b_t = torch.stack([p_t[mask], (p_t * ~mask).sum(1)], dim=1).clamp_min(1e-8)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * T**2
    big = 1000.0  # masks the target logit out of the non-target softmax
    log_q_s = F.log_softmax(student_logits / T - big * mask, dim=1)
    log_q_t = F.log_softmax(teacher_logits / T - big * mask, dim=1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s) * ~mask).sum(1).mean() * T**2
    return tckd, nckd


class DKD(DistillLoss):
    """Args:
        alpha, beta: weights of TCKD and NCKD.
        temperature: T > 0.
        warmup: epochs over which the loss weight rises linearly to 1 (0 = none).
        standardize: z-score both logits first (logit standardization).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: int = 5,
                 standardize: bool = False):
        super().__init__()
        check_temperature(temperature)
        if alpha < 0 or beta < 0 or warmup < 0:
            raise ValueError(f"DKD alpha, beta and warmup must be >= 0, got {alpha}, {beta}, {warmup}")
        self.alpha, self.beta, self.temperature, self.warmup = alpha, beta, temperature, warmup
        self.standardize = standardize
        self.epoch = 0

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> Terms:
        if self.standardize:
            student_logits, teacher_logits = standardize(student_logits), standardize(teacher_logits)
        scale = min((self.epoch + 1) / self.warmup, 1.0) if self.warmup > 0 else 1.0
        tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, self.temperature)
        return {"tckd": scale * self.alpha * tckd, "nckd": scale * self.beta * nckd}
