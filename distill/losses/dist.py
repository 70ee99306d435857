"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher").

Instead of matching probabilities exactly (KL), match their relations: the Pearson correlation of
student and teacher probabilities over the classes of each image (inter-class) and over the images of
the batch for each class (intra-class). A large teacher-student gap hurts it less than KL.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillLoss, Terms, check_temperature


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DIST(DistillLoss):
    """Args:
        beta: weight of the inter-class term ``1 - mean_i pearson(p_s[i, :], p_t[i, :])``.
        gamma: weight of the intra-class term ``1 - mean_c pearson(p_s[:, c], p_t[:, c])``.
        temperature: T > 0 of both softmaxes; the terms are scaled by T^2.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0):
        super().__init__()
        check_temperature(temperature)
        if beta < 0 or gamma < 0:
            raise ValueError(f"DIST beta and gamma must be >= 0, got {beta}, {gamma}")
        self.beta, self.gamma, self.temperature = beta, gamma, temperature

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> Terms:
        T = self.temperature
        p_s = F.softmax(student_logits / T, dim=1)
        p_t = F.softmax(teacher_logits / T, dim=1)
        inter = 1 - pearson_rows(p_s, p_t).mean()
        intra = 1 - pearson_rows(p_s.t(), p_t.t()).mean()
        return {"inter": self.beta * T**2 * inter, "intra": self.gamma * T**2 * intra}
