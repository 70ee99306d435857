"""Albumentations pipelines.

Every image goes through two steps:

1. ``to_square`` (deterministic): pad to a square keeping the aspect ratio, then resize to the run's
   base size (or a plain square resize). The image cache stores this result.
2. an augmentation preset (``none``, ``light``, ``strong``) at the base size.

Each model then gets its own view of the same augmented image, resized to its input size and
normalised with its own mean/std inside the training module (``distill.module``).
"""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

AUGMENTATIONS = ("none", "light", "strong")


def to_square(image: np.ndarray, size: int, keep_aspect: bool = True) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3 uint8. ``keep_aspect``: pad the short side with black first."""
    if keep_aspect:
        h, w = image.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        image = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def augmentation(preset: str) -> A.ReplayCompose:
    """The named augmentation preset; ``ReplayCompose`` so applied parameters can be recorded and replayed."""
    if preset not in AUGMENTATIONS:
        raise ValueError(f"augment={preset!r}: choose one of {AUGMENTATIONS}")
    if preset == "none":
        ops: list = []
    elif preset == "light":
        ops = [
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), rotate=(-10, 10), p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    else:
        ops = [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(translate_percent=(-0.1, 0.1), scale=(0.8, 1.2), rotate=(-30, 30), p=0.7),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2), p=0.5),
        ]
    return A.ReplayCompose(ops)
