"""Teacher-output cache: run the teacher once, distil many students (Fast Knowledge Distillation,
Shen & Xing, ECCV 2022).

For every training image, K augmented views are drawn; each view is recorded by the seed of the
augmentation pipeline, which reproduces its parameters (flips, affine matrix, colour factors,
dropout holes) exactly. The teacher's logits for each view are stored. During student training
``CachedViews`` (a dataset wrapper, like torchdistill's ``CacheableDataset``) replays one of the K
views of each image per epoch, pixel-identical to the recorded one, with its teacher logits in the
batch. K=1 with ``augment: none`` is the plain clean-image mode.

The file is keyed by a hash of the teacher weights, the image list, the augmentation settings and K:
any change gives another key, so stale outputs are never reused silently.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import albumentations
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from distill.console import say
from torch.utils.data import DataLoader, Dataset

from distill.checkpoint import atomic_write, atomic_write_text
from distill.data import ImageDataset
from distill.preprocess import resize_uint8
from distill.teacher import FrozenTeacher

FORMAT_VERSION = 1


@dataclass
class TeacherOutputs:
    """Per image ``i`` and view ``k``: the augmentation seed and the teacher's logits."""

    seeds: torch.Tensor  # int64 [N, K]
    logits: torch.Tensor | None = None  # float32 [N, K, C] (full logits)
    topk_values: torch.Tensor | None = None  # float32 [N, K, k] (top-k mode)
    topk_indices: torch.Tensor | None = None  # int64 [N, K, k]
    rest: torch.Tensor | None = None  # float32 [N, K]: mean of the logits outside the top k
    num_classes: int = 0

    @property
    def views(self) -> int:
        return int(self.seeds.shape[1])

    def view_logits(self, index: int, view: int) -> torch.Tensor:
        """Teacher logits of one view (top-k mode: classes outside the top k get their mean)."""
        if self.logits is not None:
            return self.logits[index, view]
        full = torch.full((self.num_classes,), float(self.rest[index, view]))
        full[self.topk_indices[index, view]] = self.topk_values[index, view]
        return full


def teacher_fingerprint(teacher: FrozenTeacher) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(teacher.preprocess).encode())
    return digest.hexdigest()


def cache_key(teacher: FrozenTeacher, dataset: ImageDataset, views: int, seed: int, topk: int | None) -> str:
    """Hash of everything the cached outputs depend on (fp32 keys are those of caches made before the
    precision option existed)."""
    digest = hashlib.sha256()
    digest.update(teacher_fingerprint(teacher).encode())
    for sample in dataset.samples:
        stat = Path(sample.path).stat()
        digest.update(f"{sample.path}|{stat.st_size}|{stat.st_mtime_ns}|{sample.label}\n".encode())
    digest.update(f"size={dataset.size}|aspect={dataset.keep_aspect}|augment={dataset.augment_name}|views={views}|"
                  f"seed={seed}|topk={topk}|albumentations={albumentations.__version__}|v={FORMAT_VERSION}".encode())
    if teacher.precision != "32":
        digest.update(f"|precision={teacher.precision}".encode())
    return digest.hexdigest()


def view_seeds(n_images: int, views: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 2**31 - 1, size=(n_images, views), dtype=np.int64))


class _ViewJobs(Dataset):
    """(image, view) pairs of a dataset as items, so loader workers can augment in parallel."""

    def __init__(self, dataset: ImageDataset, seeds: torch.Tensor):
        self.dataset, self.seeds = dataset, seeds
        self.views = seeds.shape[1]

    def __len__(self) -> int:
        return len(self.dataset) * self.views

    def __getitem__(self, job: int):
        i, k = divmod(job, self.views)
        return self.dataset.view(i, int(self.seeds[i, k])), i, k


@torch.no_grad()
def compute_teacher_outputs(teacher: FrozenTeacher, dataset: ImageDataset, views: int, seed: int = 0,
                            topk: int | None = None, batch_size: int = 64, num_workers: int = 0) -> TeacherOutputs:
    """Run ``teacher`` on K recorded views of every image of ``dataset``, with a progress bar."""
    from tqdm.auto import tqdm

    if views < 1:
        raise ValueError(f"teacher cache views must be >= 1, got {views}")
    if dataset.augment_name == "none" and views > 1:
        raise ValueError("teacher cache: views > 1 needs an augmentation preset (augment: light or strong)")
    device = next(teacher.model.parameters()).device
    n = len(dataset)
    seeds = view_seeds(n, views, seed)
    jobs = DataLoader(_ViewJobs(dataset, seeds), batch_size=batch_size, num_workers=num_workers)
    outputs = None
    with tqdm(total=n * views, desc=f"teacher outputs ({views} views/image)", unit="view") as bar:
        for images, index, view in jobs:
            logits = teacher(images.to(device)).cpu()
            if outputs is None:
                outputs = torch.empty(n, views, logits.shape[1])
            outputs[index, view] = logits
            bar.update(len(index))
    num_classes = outputs.shape[-1]
    if topk is None or topk >= num_classes:
        return TeacherOutputs(seeds, logits=outputs, num_classes=num_classes)
    values, indices = outputs.topk(topk, dim=-1)
    rest = (outputs.sum(-1) - values.sum(-1)) / (num_classes - topk)
    return TeacherOutputs(seeds, topk_values=values, topk_indices=indices, rest=rest, num_classes=num_classes)


@torch.no_grad()
def render_views(dataset: ImageDataset, seeds: torch.Tensor, size: int, batch_size: int = 64,
                 num_workers: int = 0) -> torch.Tensor:
    """Every recorded view replayed once and resized to the student's ``size``: uint8 ``N x K x 3 x size x size``.

    Training then reads views instead of re-augmenting full-size images every epoch."""
    from tqdm.auto import tqdm

    n, views = seeds.shape
    rendered = torch.empty(n, views, 3, size, size, dtype=torch.uint8)
    jobs = DataLoader(_ViewJobs(dataset, seeds), batch_size=batch_size, num_workers=num_workers)
    with tqdm(total=n * views, desc=f"rendering views at {size}px", unit="view") as bar:
        for images, index, view in jobs:
            rendered[index, view] = resize_uint8(images, size)
            bar.update(len(index))
    return rendered


def save_outputs(path: Path, outputs: TeacherOutputs, key: str) -> None:
    data = {"key": key, "seeds": outputs.seeds, "logits": outputs.logits, "topk_values": outputs.topk_values,
            "topk_indices": outputs.topk_indices, "rest": outputs.rest, "num_classes": outputs.num_classes}
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def load_outputs(path: Path, key: str) -> TeacherOutputs | None:
    """The cached outputs at ``path`` if they were made with ``key``; else None."""
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("key") != key:
        return None
    return TeacherOutputs(data["seeds"], data["logits"], data["topk_values"], data["topk_indices"], data["rest"],
                          data["num_classes"])


def load_or_compute(teacher: FrozenTeacher, dataset: ImageDataset, cache_dir: str | Path, views: int, seed: int = 0,
                    topk: int | None = None, batch_size: int = 64,
                    num_workers: int = 0) -> tuple[TeacherOutputs, Path, bool]:
    """Cached outputs for (teacher, dataset, settings): loaded when the key matches, else computed and saved.
    Returns (outputs, file, whether they were computed now)."""
    key = cache_key(teacher, dataset, views, seed, topk)
    path = Path(cache_dir) / f"teacher_outputs_{key[:20]}.pt"
    cached = load_outputs(path, key)
    if cached is not None:
        return cached, path, False
    start = time.time()
    outputs = compute_teacher_outputs(teacher, dataset, views, seed, topk, batch_size, num_workers)
    save_outputs(path, outputs, key)
    info = {"seconds": time.time() - start, "images": len(dataset), "views": views, "topk": topk,
            "precision": teacher.precision, "key": key}
    atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2))
    return outputs, path, True


class CachedViews(Dataset):
    """A training set whose items replay one recorded view per image (drawn anew each time) with the
    teacher's logits for exactly that view: ``{"image", "label", "index", "teacher_logits"}``.

    ``rendered``: the views already resized to the student's size (``render_views``); else each view is
    replayed from its augmentation seed at the base size."""

    def __init__(self, dataset: ImageDataset, outputs: TeacherOutputs, rendered: torch.Tensor | None = None):
        self.dataset, self.outputs, self.rendered = dataset, outputs, rendered

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        k = int(torch.randint(0, self.outputs.views, ()).item())
        if self.rendered is not None:
            image = self.rendered[index, k]
        else:
            image = self.dataset.view(index, int(self.outputs.seeds[index, k]))
        return {"image": image, "label": self.dataset.samples[index].label, "index": index,
                "teacher_logits": self.outputs.view_logits(index, k)}


class TeacherCache(Callback):
    """Fill (or reuse) the teacher-output cache when ``fit`` starts, then train from it.

    The data module's training set is wrapped in ``CachedViews`` and the module's teacher is released.

    Args:
        enabled: switch the cache off to run the teacher online on every batch.
        views: K augmented views recorded per training image (1 when the data has ``augment: none``).
        cache_dir: folder of the cache files (default ``<default_root_dir>/teacher_cache``); share it
            between runs that distil several students from one teacher.
        topk: keep only the top-k logits per view (the rest share their mean) to bound memory.
        seed: seed of the recorded views.
        batch_size: teacher batch size while filling.
        render: also replay every view once at the student's input size and keep those pixels in RAM
            (uint8), so epochs cost no augmentation; skipped when it would take more than ``render_max_gib``.
    """

    def __init__(self, enabled: bool = True, views: int = 8, cache_dir: str | None = None, topk: int | None = None,
                 seed: int = 0, batch_size: int = 64, render: bool = True, render_max_gib: float = 2.0):
        if views < 1:
            raise ValueError(f"teacher_cache.views must be >= 1, got {views}")
        if topk is not None and topk < 1:
            raise ValueError(f"teacher_cache.topk must be >= 1 or null, got {topk}")
        self.enabled, self.render, self.render_max_gib = enabled, render, render_max_gib
        self.views, self.cache_dir, self.topk, self.seed, self.batch_size = views, cache_dir, topk, seed, batch_size
        self.path: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled or not hasattr(pl_module, "build_teacher"):
            return
        teacher = pl_module.build_teacher()
        if teacher is None:
            return  # nothing to distil from: plain training
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "train_set", None) is None:
            raise RuntimeError("TeacherCache needs a WasteDataModule passed to fit (datamodule=...)")
        dataset = datamodule.train_set
        if isinstance(dataset, CachedViews):  # a second fit with the same data module
            dataset = dataset.dataset
        teacher.to(trainer.strategy.root_device)
        views = self.views if dataset.augment_name != "none" else 1
        cache_dir = Path(self.cache_dir or Path(trainer.default_root_dir) / "teacher_cache")
        workers = getattr(datamodule.hparams, "num_workers", 0)
        if trainer.global_rank == 0:
            outputs, self.path, fresh = load_or_compute(teacher, dataset, cache_dir, views, self.seed, self.topk,
                                                        self.batch_size, workers)
            say(f"teacher cache {'filled' if fresh else 'reused'}: {self.path}")
        trainer.strategy.barrier("teacher_cache")
        if trainer.global_rank != 0:
            outputs, self.path, _ = load_or_compute(teacher, dataset, cache_dir, views, self.seed, self.topk,
                                                    self.batch_size, 0)
        size = pl_module.student.preprocess.input_size
        need = outputs.seeds.numel() * 3 * size * size / 2**30
        rendered = None
        if self.render and size < dataset.size and need <= self.render_max_gib:
            say(f"rendered views at {size}px take {need * 1024:.0f} MiB in RAM")
            rendered = render_views(dataset, outputs.seeds, size, self.batch_size, workers)
        elif self.render:
            say(f"views replayed on the fly ({need:.2f} GiB at {size}px > render_max_gib or no resize)")
        datamodule.train_set = CachedViews(dataset, outputs, rendered)
        pl_module.release_teacher()  # training now reads the cache; the teacher is no longer needed
