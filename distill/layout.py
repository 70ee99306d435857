"""The data contract on disk: ``ROOT/train/<Class>/``, ``ROOT/val/<Class>/``, ``ROOT/test/NoLabel/``.

Class names come from the folders, sorted, and must be identical in ``train/`` and ``val/``; hidden files and
folders and non-image files are ignored. A model meets a data root only if it was trained on the same class names.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
UNLABELED = -1


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # UNLABELED for prediction images


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name; hidden and non-image files ignored."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_classes(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``split_dir``."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_split(split_dir: Path, class_names: list[str]) -> list[Sample]:
    """Every image of ``split_dir/<Class>/`` labelled with the index of its class in ``class_names``."""
    samples = []
    for label, name in enumerate(class_names):
        samples += [Sample(p, label) for p in list_images(split_dir / name)]
    return samples


def read_layout(root: str | Path) -> tuple[list[str], list[Sample], list[Sample]]:
    """Parse ``root`` into (class names, train samples, val samples); raise a clear error on a bad layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root} (expected ROOT/train/<Class>/ and ROOT/val/<Class>/)")
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir} is missing: expected ROOT/train/<Class>/*.jpg")
    classes = list_classes(train_dir)
    if len(classes) < 2:
        raise ValueError(f"{train_dir}: found {len(classes)} class folder(s) {classes}; need at least 2")
    val: list[Sample] = []
    if val_dir.is_dir():
        val_classes = list_classes(val_dir)
        if val_classes != classes:
            only_train = sorted(set(classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(classes))
            raise ValueError(f"class folders differ between {train_dir} and {val_dir}: only in train: {only_train}, "
                             f"only in val: {only_val}. Both splits must hold the same class folders.")
        val = scan_split(val_dir, classes)
    train = scan_split(train_dir, classes)
    counts = Counter(s.label for s in train + val)
    empty = [c for i, c in enumerate(classes) if counts[i] == 0]
    if empty:
        raise ValueError(f"{root}: class folder(s) with no images in train/ or val/: {empty}")
    return classes, train, val


class ClassMismatchError(ValueError):
    """A trained model whose class names (or their order) differ from a data root's class folders."""


def check_class_names(trained_on: list[str] | None, here: list[str] | None, root: str | Path | None = None) -> None:
    """Stop when a model trained on ``trained_on`` meets a data root whose class folders are ``here``: every
    prediction would carry another class's name (or the weights would not even fit)."""
    if trained_on and here and list(trained_on) != list(here):
        raise ClassMismatchError(
            f"the model was trained on {len(trained_on)} classes {list(trained_on)}, but the class folders of "
            f"{root or 'the data root'} are {list(here)}"
            + (" (the same names in another order)" if sorted(trained_on) == sorted(here) else "")
            + ": use the data root it was trained on, or give its class folders the same names")


def predict_samples(folder: Path) -> list[Sample]:
    """Every image of ``folder``, sorted by file name, unlabelled. Images in sub-folders are not predicted
    (a submission row is a bare file name); ``nested_images`` lists them so the caller can say so."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {folder} (expected ROOT/test/NoLabel/ or set predict_dir)")
    images = list_images(folder)
    if not images:
        nested = nested_images(folder)
        raise FileNotFoundError(f"no images in prediction folder {folder}"
                                + (f" ({len(nested)} in its sub-folders, e.g. {nested[0]}: move them up)" if nested else ""))
    return [Sample(p, UNLABELED) for p in images]


def nested_images(folder: Path) -> list[Path]:
    """Image files in the sub-folders of ``folder`` (any depth; hidden ones ignored), sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.parent != Path(folder) and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
