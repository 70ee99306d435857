"""Images as tensors: datasets of decoded (and optionally augmented) images at a base size, their decoding into
an in-memory or memory-mapped cache, the content key of such caches, and batching."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from distill.checkpoint import atomic_write_text
from distill.layout import Sample
from distill.preprocess import ImageLoadError, load_square
from distill.transforms import augmentation, seed_pipeline


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
