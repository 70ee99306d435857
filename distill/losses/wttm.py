"""WTTM, weighted transformed teacher matching (Zheng & Yang, ICLR 2024): the teacher's probabilities raised to a
power ``gamma`` and renormalised, matched by the student's plain softmax (no temperature on the student), each
sample weighted by the power sum ``U = sum_k p_t(k)^gamma`` (flatter teachers, larger U, weigh more)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillLoss, Terms


def wttm_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gamma: float = 0.2) -> torch.Tensor:
    """``mean_i U_i * KL(p_t_i^gamma / U_i || softmax(s_i))`` with ``U_i = sum_k p_t_i(k)^gamma``."""
    check_gamma(gamma)
    log_power = gamma * F.log_softmax(teacher_logits, dim=1)  # log p_t^gamma, in log space for small probabilities
    log_u = torch.logsumexp(log_power, dim=1, keepdim=True)
    log_target = log_power - log_u  # the transformed teacher, a distribution again
    kl = F.kl_div(F.log_softmax(student_logits, dim=1), log_target, reduction="none", log_target=True).sum(1)
    return (log_u.squeeze(1).exp() * kl).mean()


def check_gamma(gamma: float) -> None:
    if not 0 < gamma <= 1:
        raise ValueError(f"WTTM gamma must be in (0, 1] (1: plain KL at temperature 1, weight 1), got {gamma}")


class WTTM(DistillLoss):
    """Args:
        gamma: the power on the teacher's probabilities, in (0, 1]; like 1/T of KD's teacher side (the paper's
            CIFAR-100 settings: 0.1-0.5).
    """

    def __init__(self, gamma: float = 0.2):
        super().__init__()
        check_gamma(gamma)
        self.gamma = gamma

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> Terms:
        return {"wttm": wttm_loss(student_logits, teacher_logits, self.gamma)}
