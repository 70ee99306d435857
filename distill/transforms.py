"""Augmentation presets (albumentations), applied to the square base image (``distill.preprocess``).

Each model then gets its own view of the same augmented image, resized to its input size and
normalised with its own mean/std (``distill.preprocess.model_input``).
"""
from __future__ import annotations

import random
from typing import Literal

import albumentations as A  # NO_ALBUMENTATIONS_UPDATE is set by the package (distill/__init__.py)
import numpy as np

from distill.choices import check_choice

Augment = Literal["none", "light", "strong"]


def augmentation(preset: str) -> A.Compose:
    """The named augmentation preset. A view is reproduced by seeding the pipeline (``seed_pipeline``: same
    seed, same pixels); ``definition`` serialises what it does."""
    check_choice(preset, Augment, "augment")
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
    return A.Compose(ops)


def seed_pipeline(pipeline: A.BaseCompose, seed: int) -> None:
    """Seed ``pipeline`` for one view: one numpy and one Python generator, shared by every transform, so each
    transform draws its own numbers from the one stream. (albumentations' ``set_random_seed`` gives every
    transform a generator of the same seed: all of them then draw the same first number, and transforms of
    equal probability are applied together or not at all.)"""
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def definition(pipeline: A.BaseCompose) -> dict:
    """What ``pipeline`` does, as albumentations serialises it (every transform and parameter): caches key on
    this, so changing a preset's definition invalidates outputs made with the old one."""
    return A.to_dict(pipeline)
