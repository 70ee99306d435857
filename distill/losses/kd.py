"""Hinton KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, optionally on standardized logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillLoss, Terms, check_temperature, standardize


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, mean over the batch."""
    check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


class KD(DistillLoss):
    """Args:
        temperature: T > 0.
        standardize: z-score both logits first (logit standardization); then a T around 2 is typical.
    """

    def __init__(self, temperature: float = 4.0, standardize: bool = False):
        super().__init__()
        check_temperature(temperature)
        self.temperature, self.standardize = temperature, standardize

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> Terms:
        if self.standardize:
            student_logits, teacher_logits = standardize(student_logits), standardize(teacher_logits)
        return {"kd": kd_loss(student_logits, teacher_logits, self.temperature)}
