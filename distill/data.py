"""Waste-photo folders as a ``LightningDataModule``.

Layout (the contract)::

    ROOT/train/<Class>/*.jpg   ROOT/val/<Class>/*.jpg   ROOT/test/NoLabel/*.jpg

Class names come from the folders, sorted, and must be identical in ``train/`` and ``val/``.
Batches are dicts of tensors with the batch first: ``image`` uint8 ``B x 3 x S x S`` at the base size
``S = image_size``, ``label`` (int64, ``UNLABELED`` for images to predict) and ``index`` into the dataset; the
teacher-output cache adds ``teacher_logits`` (float32 ``B x C``). The training module resizes and normalises a view for each model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate

from distill.checkpoint import atomic_write_text
from distill.choices import check_choice
from distill.console import say
from distill.preprocess import ImageLoadError, load_square
from distill.transforms import Augment, augmentation, seed_pipeline

log = logging.getLogger(__name__)
ValMode = Literal["given", "merge"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
UNLABELED = -1


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # UNLABELED for prediction images


# ---------------------------------------------------------------- files and layout

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


def holdout_split(samples: list[Sample], root: Path, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Carve a held-out split off ``samples``: in each class, the ``round(fraction * n_c)`` images first in
    the order of ``sha256(seed | path relative to root)``. Returns (kept, held out).

    Whether an image is held out depends only on its own path, its class and ``seed``: not on the run's
    seed, ``val_mode`` or the other stages, so the teacher, every student and every seed hold out the same
    images (and adding an image elsewhere moves at most one image of its class)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"data.holdout_fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(samples), []

    def rank(sample: Sample) -> str:
        relative = sample.path.relative_to(root).as_posix()
        return hashlib.sha256(f"{seed}|{relative}".encode()).hexdigest()

    held: set[Path] = set()
    for label in sorted({s.label for s in samples}):
        members = sorted((s for s in samples if s.label == label), key=rank)
        n = int(round(fraction * len(members)))
        held.update(s.path for s in members[: min(n, len(members) - 1)])
    return [s for s in samples if s.path not in held], sorted((s for s in samples if s.path in held),
                                                                key=lambda s: (s.label, s.path))


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


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded stratified split of indices: ``round(fraction * n_c)`` of each class (at least 1 when the
    class has 2 or more images) go to the second list."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        idx = np.array(by_class[label])
        rng.shuffle(idx)
        n_val = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx += idx[:n_val].tolist()
        train_idx += idx[n_val:].tolist()
    return sorted(train_idx), sorted(val_idx)


# ---------------------------------------------------------------- datasets

class ImageDataset(Dataset):
    """Samples -> ``{"image": uint8 3xSxS tensor, "label", "index"}``; optionally backed by a decoded-image cache."""

    def __init__(self, samples: list[Sample], size: int, augment: str = "none", keep_aspect: bool = True,
                 cache: "np.ndarray | None" = None, blank: set[int] | None = None):
        self.samples = samples
        self.size = size
        self.keep_aspect = keep_aspect
        self.augment_name = augment
        self.augment = augmentation(augment)
        self.cache = cache
        self.blank = blank or set()  # indices served as black images (unreadable, predict_fallback)

    def __len__(self) -> int:
        return len(self.samples)

    def base_image(self, index: int) -> np.ndarray:
        if index in self.blank:
            return np.zeros((self.size, self.size, 3), np.uint8)
        if self.cache is not None:
            return self.cache[index]
        return load_square(self.samples[index].path, self.size, self.keep_aspect)

    def view(self, index: int, seed: int | None) -> torch.Tensor:
        """Image ``index`` augmented with the pipeline seeded by ``seed`` (same seed, same pixels): uint8
        ``3 x S x S`` with channels-last strides (the decoded H x W x 3 bytes, not copied into planes:
        ``stack_views`` batches them with one copy, in the layout the models take)."""
        image = self.base_image(index)
        if self.augment_name != "none" and seed is not None:
            seed_pipeline(self.augment, int(seed))
            image = self.augment(image=image)["image"]
        if not image.flags.writeable:  # a read-only memory-mapped cache row
            image = np.array(image)
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)

    def __getitem__(self, index: int) -> dict:
        # albumentations keeps its own RNG: seed it from torch's, which Lightning seeds per worker.
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if self.augment_name != "none" else None
        return {"image": self.view(index, seed), "label": self.samples[index].label, "index": index}


def stack_views(views: list[torch.Tensor]) -> torch.Tensor:
    """``3 x S x S`` images -> a channels-last ``B x 3 x S x S`` batch: stacked as ``S x S x 3`` (one plain
    copy for views from ``ImageDataset.view``) instead of being transposed into planes one by one."""
    return torch.stack([v.permute(1, 2, 0) for v in views]).permute(0, 3, 1, 2)


def collate(items: list[dict] | dict) -> dict:
    """``default_collate`` with the images batched by ``stack_views``; a batch a dataset fetched whole
    (``__getitems__``, already a dict of batched tensors) passes as it is."""
    if isinstance(items, dict):
        return items
    images = stack_views([item["image"] for item in items])
    rest = default_collate([{k: v for k, v in item.items() if k != "image"} for item in items])
    return {"image": images, **rest}


def cache_bytes(n_images: int, size: int) -> int:
    """Memory an image cache of ``n_images`` at ``size`` px takes (uint8 RGB)."""
    return n_images * size * size * 3


def files_key(samples: list[Sample], definitions: dict) -> str:
    """The key of a cache made from ``samples``: every file's content and label, in order, and every resolved
    definition the cached values depend on (``definitions``, serialised as sorted JSON). The image cache and the
    teacher-output cache both use it. Content, not path or modification time: a dataset copied, moved or
    re-extracted keeps its caches, and an image edited in place invalidates them."""
    digest = hashlib.sha256(json.dumps(definitions, sort_keys=True, default=str).encode())
    for s in samples:
        try:
            digest.update(hashlib.sha256(s.path.read_bytes()).digest())
        except OSError as err:  # decoding reports (and skips) the file; the key only has to differ from readable
            digest.update(f"unreadable: {err.strerror}".encode())
        digest.update(f"|{s.label}\n".encode())  # readable files hash as before the unreadable case existed
    return digest.hexdigest()


def decode_all(samples: list[Sample], size: int, keep_aspect: bool, desc: str, keep: bool = True,
               disk_dir: str | Path | None = None) -> tuple["np.ndarray | None", list[int], dict[str, str]]:
    """Decode every sample once (with a progress bar). Returns (uint8 N x S x S x 3 cache of the readable
    samples or None, indices of readable samples, {path: error message} of unreadable ones).

    ``disk_dir``: memory-map the cache from a ``.npy`` file there (for data larger than RAM); a finished
    file for the same images and settings is reused without decoding again."""
    from tqdm.auto import tqdm

    index_file = None
    if keep and disk_dir is not None:
        key = files_key(samples, {"size": size, "keep_aspect": keep_aspect, "loader": "load_square v1"})[:24]
        disk_dir = Path(disk_dir)
        disk_dir.mkdir(parents=True, exist_ok=True)
        array_file, index_file = disk_dir / f"images_{key}.npy", disk_dir / f"images_{key}.json"
        if index_file.exists() and array_file.exists():
            meta = json.loads(index_file.read_text())
            return np.load(array_file, mmap_mode="r"), meta["good"], meta["errors"]
        cache = np.lib.format.open_memmap(array_file, mode="w+", dtype=np.uint8, shape=(len(samples), size, size, 3))
    else:
        cache = np.empty((len(samples), size, size, 3), dtype=np.uint8) if keep else None
    good: list[int] = []
    errors: dict[str, str] = {}
    for i, sample in enumerate(tqdm(samples, desc=desc, unit="img", leave=False)):
        try:
            image = load_square(sample.path, size, keep_aspect)
        except ImageLoadError as err:
            errors[str(sample.path)] = str(err)
            continue
        if cache is not None:
            cache[len(good)] = image
        good.append(i)
    if index_file is not None:
        cache.flush()
        atomic_write_text(index_file, json.dumps({"good": good, "errors": errors}))  # last: marks it complete
    if cache is not None:
        cache = cache[: len(good)]
    return cache, good, errors


# ---------------------------------------------------------------- datamodule

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
    """

    def __init__(self, root: str, image_size: int = 224, val_mode: ValMode = "given", val_fraction: float = 0.15,
                 seed: int = 0, batch_size: int = 64, num_workers: int = 0, augment: Augment = "light",
                 keep_aspect: bool = True, cache_images: bool = True, image_cache_dir: str | None = None,
                 strict: bool = False,
                 balanced_sampler: bool = False, predict_dir: str | None = None,
                 predict_fallback: str | None = None, holdout_fraction: float = 0.0, holdout_seed: int = 0):
        super().__init__()
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
        self.holdout_samples = sorted(held_train + held_val, key=lambda s: (s.label, s.path))
        if val_mode == "merge" or not val:
            pooled = train + val
            if not val:
                log.warning("%s has no val/ folder: drawing a stratified %.0f%% validation split from train/",
                            self.root, 100 * val_fraction)
            tr, va = stratified_split([s.label for s in pooled], val_fraction, seed)
            train, val = [pooled[i] for i in tr], [pooled[i] for i in va]
        self.train_samples, self.val_samples = train, val
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
        self.train_set: ImageDataset | None = None  # what training reads: the images, or the teacher's outputs
        self.train_images: ImageDataset | None = None  # the training images themselves (augmented, decoded)
        self.teacher_outputs: Dataset | None = None  # replayed views with teacher logits (distill.cache)
        self.val_set: ImageDataset | None = None
        self.holdout_set: ImageDataset | None = None
        self.predict_set: ImageDataset | None = None

    # -- facts about the data, available right after __init__
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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

    def _prepare_labelled(self, splits: tuple[str, ...]) -> None:
        """Decode the labelled ``splits`` (``train``, ``val``) not decoded yet; one warning for unreadable files."""
        hp = self.hparams
        todo = [s for s in splits if getattr(self, f"{s}_set") is None]
        if not todo:
            return
        self._announce_cache(sum(len(getattr(self, f"{s}_samples")) for s in todo))
        errors: dict[str, str] = {}
        for split in todo:
            samples = getattr(self, f"{split}_samples")
            cache, good, err = decode_all(samples, hp.image_size, hp.keep_aspect, f"decoding {split} images",
                                          hp.cache_images, hp.image_cache_dir)
            errors.update(err)
            samples = [samples[i] for i in good]
            setattr(self, f"{split}_samples", samples)
            augment = hp.augment if split == "train" else "none"
            setattr(self, f"{split}_set", ImageDataset(samples, hp.image_size, augment, hp.keep_aspect, cache))
        if errors:
            listing = "\n  ".join(errors.values())
            if hp.strict:
                raise ImageLoadError(f"{len(errors)} unreadable training image(s) (strict mode):\n  {listing}")
            warnings.warn(f"skipped {len(errors)} unreadable image(s):\n  {listing}", stacklevel=3)
        self.skipped_files += list(errors)
        if "train" in todo:
            self.train_images = self.train_set
            if self.teacher_outputs is not None:
                self.train_set = self.teacher_outputs

    def use_teacher_outputs(self, replay: Dataset) -> None:
        """Train on ``replay`` (the teacher-output cache replaying recorded views of ``train_images`` with the
        teacher's logits, ``distill.cache``) instead of augmenting the training images."""
        if len(replay) != len(self.train_samples):
            raise ValueError(f"the teacher outputs cover {len(replay)} images, the training split has "
                             f"{len(self.train_samples)}: they were made for other data")
        self.teacher_outputs = replay
        if self.train_images is not None:
            self.train_set = replay

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
