"""A built-in synthetic data set in the contract layout, so the whole pipeline runs with no downloads.

Nine imbalanced classes named like the target data; each class is a shape of a typical colour on a
noisy background, drawn at varied image sizes and aspect ratios. ``test/NoLabel`` holds unlabelled
images drawn the same way.

    distill demo runs/demo-data
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["Battery", "Clothing", "Glass", "Metal", "Paper", "Paperpack", "Plastic", "Plasticbag", "Styrofoam"]
# relative class frequencies (heavily imbalanced, like the target data)
WEIGHTS = [0.3, 0.4, 0.6, 0.7, 1.0, 0.5, 1.0, 0.8, 0.35]
_COLOURS = [(200, 40, 40), (40, 160, 40), (60, 200, 220), (150, 150, 160), (240, 240, 220),
            (200, 160, 60), (40, 60, 220), (220, 60, 200), (250, 250, 250)]
_SHAPES = ["rect", "ellipse", "triangle", "rect", "ellipse", "triangle", "rect", "ellipse", "triangle"]


def draw_item(label: int, rng: np.random.Generator, min_side: int = 40, max_side: int = 160) -> Image.Image:
    """One synthetic crop of class ``label``: random size and aspect ratio, noisy background."""
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    background = rng.integers(0, 120, size=3)
    noise = rng.normal(0, 18, size=(h, w, 3))
    image = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in _COLOURS[label])
    x0, y0 = rng.integers(0, w // 4 + 1), rng.integers(0, h // 4 + 1)
    x1, y1 = w - rng.integers(0, w // 4 + 1) - 1, h - rng.integers(0, h // 4 + 1) - 1
    shape = _SHAPES[label]
    if shape == "rect":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif shape == "ellipse":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=colour)
    if label in (3, 7):  # stripes tell Metal from Plastic-like colours
        for y in range(int(y0), int(y1), 6):
            draw.line([(x0, y), (x1, y)], fill=(30, 30, 30), width=1)
    return image


def make_demo_dataset(root: str | Path, per_class: int = 40, test_images: int = 30, seed: int = 0,
                      min_side: int = 40, max_side: int = 160, classes: list[str] | None = None) -> Path:
    """Write ``root/{train,val}/<Class>/*.jpg`` and ``root/test/NoLabel/*.jpg``; returns ``root``.

    ``per_class`` is the image count of the most frequent class; the others get fewer (imbalanced),
    and about 20% of each class goes to ``val/``."""
    root = Path(root)
    classes = classes or CLASSES
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        n = max(4, int(round(per_class * WEIGHTS[label % len(WEIGHTS)])))
        n_val = max(1, n // 5)
        for i in range(n):
            split = "val" if i < n_val else "train"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            draw_item(label % len(_COLOURS), rng, min_side, max_side).save(folder / f"{name.lower()}_{i:04d}.jpg", quality=90)
    test = root / "test" / "NoLabel"
    test.mkdir(parents=True, exist_ok=True)
    for i in range(test_images):
        label = int(rng.integers(0, len(classes)))
        draw_item(label % len(_COLOURS), rng, min_side, max_side).save(test / f"img_{i:05d}.jpg", quality=90)
    return root


def run(args: argparse.Namespace) -> None:
    """``distill demo`` (arguments: ``distill.command_args.demo_parser``)."""
    print(make_demo_dataset(args.root, args.per_class, args.test_images, args.seed))

