"""Waste-photo folders as a ``LightningDataModule`` (``WasteDataModule``).

The pieces it is made of, one job each: ``distill.layout`` (the folders on disk and their classes),
``distill.splits`` (held-out and validation splits), ``distill.images`` (decoding, the image cache, datasets, batching).
Batches are dicts of tensors with the batch first: ``image`` uint8 ``B x 3 x S x S`` at the base size
``S = image_size``, ``label`` (int64, ``UNLABELED`` for images to predict) and ``index`` into the dataset; the
teacher-output cache adds ``teacher_logits`` (float32 ``B x C``). The training module resizes and normalises a view
for each model. The names of those modules are importable from here too.
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from distill import splits
from distill.choices import check_choice
from distill.console import say
from distill.images import (
    ImageDataset,
    cache_bytes,
    collate,
    decode_all,
    files_key,
    stack_views,
)
from distill.layout import (
    IMAGE_EXTENSIONS,
    UNLABELED,
    ClassMismatchError,
    Sample,
    check_class_names,
    list_classes,
    list_images,
    nested_images,
    predict_samples,
    read_layout,
    scan_split,
)
from distill.preprocess import ImageLoadError
from distill.splits import check_cross_fit, holdout_split, stratified_split
from distill.transforms import Augment

__all__ = ["WasteDataModule", "ImageDataset", "cache_bytes", "collate", "decode_all", "files_key", "stack_views",
           "IMAGE_EXTENSIONS", "UNLABELED", "ClassMismatchError", "Sample", "check_class_names", "list_classes",
           "list_images", "nested_images", "predict_samples", "read_layout", "scan_split", "holdout_split",
           "stratified_split"]

log = logging.getLogger(__name__)
ValMode = Literal["given", "merge"]


@dataclass(frozen=True)
class PredictFiles:
    """What a submission is written from: the images to predict, in the prediction set's order, and what became
    of the others."""

    folder: Path
    names: list[str]  # bare file names, one per image of the prediction set
    unreadable: set[str]  # names of unreadable images (predicted on as ``fallback`` says)
    fallback: str | None  # ``predict_fallback``: None, ``blank`` or a class name
    skipped: dict[str, str]  # images under ``folder`` not predicted, and why


class WasteDataModule(L.LightningDataModule):
    """Train/val/predict data for the ``ROOT/{train,val,test/NoLabel}`` layout.

    Args:
        root: data folder.
        image_size: base square size every image is brought to (the largest input any model of the run needs).
        val_mode: ``given`` uses ``val/`` as is; ``merge`` pools train+val and draws a stratified,
            seeded validation split of ``val_fraction``.
        augment: augmentation preset for training: ``none``, ``light`` or ``strong``.
        keep_aspect: pad to square before resizing (default) instead of a plain square resize.
        cache_images: decode every image once at ``image_size`` (uint8) and reuse it every epoch.
        image_cache_dir: keep that cache as memory-mapped files in this folder instead of RAM (for data
            sets larger than RAM; reused by later runs on the same images).
        strict: raise on an unreadable training image instead of skipping it with a warning.
        balanced_sampler: draw training images with class-balanced probabilities.
        predict_dir: folder of images to predict (default ``ROOT/test/NoLabel``).
        holdout_fraction: carve this stratified fraction of the labelled images (train/ and val/ pooled)
            off as a held-out split that no run trains on or selects a checkpoint with; ``distill test`` and
            the pipeline report macro F1 on it. The choice depends only on each file's path and
            ``holdout_seed`` (``holdout_split``), so every stage and seed holds out the same images.
        predict_fallback: what to do with an unreadable image to predict. None (default): stop with an
            error listing every such file. ``blank``: predict on a black image. A class name: label it so.
            Either choice is recorded in ``report.json``.
        cross_fit_fold: train on the training images outside this fold of ``cross_fit_folds`` (a cross-fitted
            teacher's fine-tune: it then labels that fold's images, which it never trained on; see
            ``TeacherSpec.cross_fit``). Folds are drawn by each file's path and ``holdout_seed``
            (``distill.splits.cross_fit_fold``); validation and held-out images are not touched.
    """

    def __init__(self, root: str, image_size: int = 224, val_mode: ValMode = "given", val_fraction: float = 0.15,
                 seed: int = 0, batch_size: int = 64, num_workers: int = 0, augment: Augment = "light",
                 keep_aspect: bool = True, cache_images: bool = True, image_cache_dir: str | None = None,
                 strict: bool = False,
                 balanced_sampler: bool = False, predict_dir: str | None = None,
                 predict_fallback: str | None = None, holdout_fraction: float = 0.0, holdout_seed: int = 0,
                 cross_fit_fold: int | None = None, cross_fit_folds: int = 2):
        super().__init__()
        check_cross_fit(cross_fit_fold, cross_fit_folds)
        check_choice(val_mode, ValMode, "val_mode")
        check_choice(augment, Augment, "augment")
        if image_size < 8:
            raise ValueError(f"image_size={image_size} is too small (>= 8)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.root = Path(root)
        self.class_names, train, val = read_layout(self.root)
        train, held_train = holdout_split(train, self.root, holdout_fraction, holdout_seed)
        val, held_val = holdout_split(val, self.root, holdout_fraction, holdout_seed)
        held = sorted(held_train + held_val, key=lambda s: (s.label, s.path))
        if val_mode == "merge" or not val:
            pooled = train + val
            if not val:
                log.warning("%s has no val/ folder: drawing a stratified %.0f%% validation split from train/",
                            self.root, 100 * val_fraction)
            tr, va = stratified_split([s.label for s in pooled], val_fraction, seed)
            train, val = [pooled[i] for i in tr], [pooled[i] for i in va]
        if cross_fit_fold is not None:  # a cross-fitted teacher's fine-tune: its own fold left out
            train = [s for s in train if splits.cross_fit_fold(s, self.root, cross_fit_folds, holdout_seed)
                     != cross_fit_fold]
        # each labelled split's samples (after unreadable files are dropped, once decoded), and its decoded dataset
        self.samples: dict[str, list[Sample]] = {"train": train, "val": val, "holdout": held}
        self.decoded: dict[str, ImageDataset] = {}
        untrained = [(name, sum(s.label == i for s in val)) for i, name in enumerate(self.class_names)
                     if not any(s.label == i for s in train)]
        if untrained:
            warnings.warn(f"{self.root}: class(es) with no training image, which the model cannot learn: "
                          + ", ".join(f"{name} ({n} in validation)" for name, n in untrained)
                          + "; add training images or use data.val_mode: merge", stacklevel=2)
        self.predict_dir = Path(predict_dir) if predict_dir else self.root / "test" / "NoLabel"
        if predict_fallback not in (None, "blank", *self.class_names):
            raise ValueError(f"predict_fallback={predict_fallback!r}: choose null, 'blank' or a class name "
                             f"{self.class_names}")
        self.skipped_files: list[str] = []
        self.predict_unreadable: list[str] = []  # unreadable images handled by predict_fallback
        self.predict_skipped: dict[str, str] = {}  # images under the predict folder not predicted, and why
        self.teacher_outputs: Dataset | None = None  # replayed views with teacher logits (distill.cache)
        self.predict_set: ImageDataset | None = None

    # -- facts about the data, available right after __init__
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_samples(self) -> list[Sample]:
        return self.samples["train"]

    @property
    def val_samples(self) -> list[Sample]:
        return self.samples["val"]

    @property
    def holdout_samples(self) -> list[Sample]:
        """The held-out images (``holdout_fraction``); empty when nothing is held out."""
        return self.samples["holdout"]

    def train_folds(self, folds: int) -> list[int]:
        """The cross-fit fold of each training image, in ``train_samples``' order (``cross_fit_fold``)."""
        return [splits.cross_fit_fold(s, self.root, folds, self.hparams.holdout_seed) for s in self.train_samples]

    @property
    def train_images(self) -> ImageDataset | None:
        """The training images themselves (augmented, decoded), once set up for fit."""
        return self.decoded.get("train")

    @property
    def train_set(self) -> Dataset | None:
        """What training reads: the teacher's outputs when given (``use_teacher_outputs``), else the images."""
        images = self.train_images
        return self.teacher_outputs if images is not None and self.teacher_outputs is not None else images

    @property
    def val_set(self) -> ImageDataset | None:
        return self.decoded.get("val")

    @property
    def holdout_set(self) -> ImageDataset | None:
        return self.decoded.get("holdout")

    def labelled_split(self, name: str) -> ImageDataset | None:
        """The ``train``, ``val`` or ``holdout`` split, decoded (now, if not yet; ``train`` augmented); None
        when the data has no image in it (nothing held out, no val/ folder)."""
        if name not in self.samples:
            raise ValueError(f"no split {name!r}: choose one of {sorted(self.samples)}")
        if not self.samples[name]:
            return None
        self._prepare_labelled((name,))
        return self.decoded[name]

    @property
    def base_size(self) -> int:
        """The square size every image is brought to (``image_size``)."""
        return self.hparams.image_size

    @property
    def class_counts(self) -> list[int]:
        """Training images per class (after unreadable files are dropped, once set up)."""
        counts = Counter(s.label for s in self.train_samples)
        return [counts[i] for i in range(self.num_classes)]

    # -- lightning hooks
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit"):
            self._prepare_labelled(("train", "val"))
        elif stage == "validate":
            self._prepare_labelled(("val",))
        elif stage == "test":
            self._prepare_labelled(("holdout",) if self.holdout_samples else ("val",))
        if stage in (None, "predict") and self.predict_set is None:
            samples = predict_samples(self.predict_dir)
            self.predict_skipped = {str(p): "in a sub-folder of the prediction folder (rows are bare file names)"
                                    for p in nested_images(self.predict_dir)}
            if self.predict_skipped:
                warnings.warn(f"{len(self.predict_skipped)} image(s) in sub-folders of {self.predict_dir} are not "
                              "predicted (recorded in report.json):\n  " + "\n  ".join(self.predict_skipped),
                              stacklevel=2)
            self._announce_cache(len(samples))
            cache, _, errors = decode_all(samples, hp.image_size, hp.keep_aspect, "decoding test images",
                                          keep=hp.cache_images, disk_dir=hp.image_cache_dir)
            if errors and hp.predict_fallback is None:
                raise ImageLoadError(f"{len(errors)} unreadable image(s) in {self.predict_dir}; a submission needs a "
                                     "row for every image (or set data.predict_fallback):\n  "
                                     + "\n  ".join(errors.values()))
            self.predict_unreadable = sorted(errors)
            if errors:
                warnings.warn(f"{len(errors)} unreadable image(s) to predict, handled by predict_fallback="
                              f"{hp.predict_fallback!r}:\n  " + "\n  ".join(errors.values()), stacklevel=2)
                cache = _with_blanks(cache, samples, errors, hp.image_size)
            self.predict_set = ImageDataset(samples, hp.image_size, "none", hp.keep_aspect, cache,
                                            blank={i for i, s in enumerate(samples) if str(s.path) in errors})

    def predict_files(self) -> PredictFiles:
        """The prediction set's files (set up for predict first)."""
        if self.predict_set is None:
            raise RuntimeError("the data module is not set up for predict")
        return PredictFiles(self.predict_dir, [s.path.name for s in self.predict_set.samples],
                            {Path(p).name for p in self.predict_unreadable}, self.hparams.predict_fallback,
                            dict(self.predict_skipped))

    def _prepare_labelled(self, splits: tuple[str, ...]) -> None:
        """Decode the labelled ``splits`` not decoded yet; one warning for unreadable files."""
        hp = self.hparams
        todo = [s for s in splits if s not in self.decoded]
        if not todo:
            return
        self._announce_cache(sum(len(self.samples[s]) for s in todo))
        errors: dict[str, str] = {}
        for split in todo:
            samples = self.samples[split]
            cache, good, err = decode_all(samples, hp.image_size, hp.keep_aspect, f"decoding {split} images",
                                          hp.cache_images, hp.image_cache_dir)
            errors.update(err)
            self.samples[split] = samples = [samples[i] for i in good]
            augment = hp.augment if split == "train" else "none"
            self.decoded[split] = ImageDataset(samples, hp.image_size, augment, hp.keep_aspect, cache)
        if errors:
            listing = "\n  ".join(errors.values())
            if hp.strict:
                raise ImageLoadError(f"{len(errors)} unreadable training image(s) (strict mode):\n  {listing}")
            warnings.warn(f"skipped {len(errors)} unreadable image(s):\n  {listing}", stacklevel=3)
        self.skipped_files += list(errors)

    def use_teacher_outputs(self, replay: Dataset) -> None:
        """Train on ``replay`` (the teacher-output cache replaying recorded views of ``train_images`` with the
        teacher's logits, ``distill.cache``) instead of augmenting the training images."""
        if len(replay) != len(self.train_samples):
            raise ValueError(f"the teacher outputs cover {len(replay)} images, the training split has "
                             f"{len(self.train_samples)}: they were made for other data")
        self.teacher_outputs = replay

    def _announce_cache(self, n_images: int) -> None:
        hp = self.hparams
        if hp.cache_images:
            where = f"memory-mapped in {hp.image_cache_dir}" if hp.image_cache_dir else "in RAM"
            say(f"image cache: {n_images} images at {hp.image_size}px take "
                           f"{cache_bytes(n_images, hp.image_size) / 2**20:.1f} MiB {where}")

    def _loader(self, dataset: Dataset, shuffle: bool, sampler=None) -> DataLoader:
        hp = self.hparams
        return DataLoader(dataset, batch_size=hp.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.hparams.balanced_sampler:
            counts = self.class_counts
            weights = [1.0 / counts[s.label] for s in self.train_samples]
            sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True)
        return self._loader(self.train_set, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The held-out split when ``holdout_fraction`` carved one, else the validation split."""
        return self._loader(self.holdout_set if self.holdout_samples else self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)


def _with_blanks(cache, samples: list[Sample], errors: dict[str, str], size: int):
    """Re-index a cache of the readable images to all ``samples`` (unreadable rows black)."""
    if cache is None:
        return None
    full = np.zeros((len(samples), size, size, 3), np.uint8)
    good = [i for i, s in enumerate(samples) if str(s.path) not in errors]
    full[good] = cache
    return full
