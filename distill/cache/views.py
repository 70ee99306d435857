"""The recorded views of the teacher-output cache: how each view of each training image is drawn (seeded
augmentation, optionally mixed with a partner image: mixup or CutMix) and rendered again, exactly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from distill.choices import check_choice
from distill.images import ImageDataset

MixMode = Literal["none", "mixup", "cutmix", "both"]


@dataclass(frozen=True)
class MixSpec:
    """How recorded views are mixed: ``mode`` (none, mixup, cutmix, or both at random), the Beta(alpha,
    alpha) of the own image's share, and the fraction ``prob`` of views that are mixed."""

    mode: MixMode = "none"
    alpha: float = 1.0
    prob: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.mode, MixMode, "teacher_cache.mix")
        if self.alpha <= 0:
            raise ValueError(f"teacher_cache.mix_alpha must be > 0, got {self.alpha}")
        if not 0 <= self.prob <= 1:
            raise ValueError(f"teacher_cache.mix_prob must be in [0, 1], got {self.prob}")

    @property
    def enabled(self) -> bool:
        return self.mode != "none" and self.prob > 0


@dataclass
class ViewRecord:
    """Per image ``i`` and view ``k``: how to make the view again. ``partners[i, k] = -1``: not mixed."""

    seeds: torch.Tensor  # int64 [N, K]
    partners: torch.Tensor  # int64 [N, K]
    partner_seeds: torch.Tensor  # int64 [N, K]
    weights: torch.Tensor  # float32 [N, K]: the own image's share of the view (1 = not mixed)
    boxes: torch.Tensor  # int64 [N, K, 4]: CutMix box (x0, y0, x1, y1) at the base size; zeros = mixup

    @property
    def views(self) -> int:
        return int(self.seeds.shape[1])

    @property
    def mixed(self) -> bool:
        return bool((self.partners >= 0).any())


def draw_views(n_images: int, views: int, size: int, seed: int, mix: MixSpec = MixSpec()) -> ViewRecord:
    """The recorded views of ``n_images`` images, drawn from ``seed`` (the same on every process)."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=(n_images, views), dtype=np.int64)
    partners = np.full((n_images, views), -1, dtype=np.int64)
    partner_seeds = np.zeros((n_images, views), dtype=np.int64)
    weights = np.ones((n_images, views), dtype=np.float32)
    boxes = np.zeros((n_images, views, 4), dtype=np.int64)
    if mix.enabled and n_images > 1:
        mixed = rng.random((n_images, views)) < mix.prob
        offsets = rng.integers(1, n_images, size=(n_images, views))  # never the image itself
        partners = np.where(mixed, (np.arange(n_images)[:, None] + offsets) % n_images, -1)
        partner_seeds = rng.integers(0, 2**31 - 1, size=(n_images, views), dtype=np.int64)
        lam = rng.beta(mix.alpha, mix.alpha, size=(n_images, views))
        cut = {"mixup": np.zeros_like(mixed), "cutmix": np.ones_like(mixed),
               "both": rng.random((n_images, views)) < 0.5}[mix.mode] & mixed
        # CutMix box of area (1 - lam) S^2, centred uniformly, clipped; the weight is the area really kept
        side = size * np.sqrt(1 - lam)
        cx, cy = rng.uniform(0, size, size=(2, n_images, views))
        x0, x1 = np.clip(cx - side / 2, 0, size).round(), np.clip(cx + side / 2, 0, size).round()
        y0, y1 = np.clip(cy - side / 2, 0, size).round(), np.clip(cy + side / 2, 0, size).round()
        kept = 1 - (x1 - x0) * (y1 - y0) / size**2
        boxes = np.where(cut[..., None], np.stack([x0, y0, x1, y1], -1), 0).astype(np.int64)
        weights = np.where(mixed, np.where(cut, kept, lam), 1.0).astype(np.float32)
    return ViewRecord(*(torch.from_numpy(a) for a in (seeds, partners, partner_seeds, weights, boxes)))


def render_view(dataset: ImageDataset, record: ViewRecord, i: int, k: int) -> torch.Tensor:
    """View ``k`` of image ``i`` at the base size, uint8 ``3 x S x S``, exactly as recorded."""
    own = dataset.view(i, int(record.seeds[i, k]))
    partner = int(record.partners[i, k])
    if partner < 0:
        return own
    other = dataset.view(partner, int(record.partner_seeds[i, k]))
    x0, y0, x1, y1 = (int(v) for v in record.boxes[i, k])
    if x1 > x0 and y1 > y0:  # CutMix
        out = own.clone()
        out[:, y0:y1, x0:x1] = other[:, y0:y1, x0:x1]
        return out
    w = float(record.weights[i, k])
    return (w * own.float() + (1 - w) * other.float()).round().clamp(0, 255).to(torch.uint8)
