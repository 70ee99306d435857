"""The teacher-output cache as a data source: ``CacheSettings`` (what to record), ``fill_teacher_cache`` (fill,
resume or reuse the cache of a teacher on a training set: a function of the two) and ``TeacherCache``, whose ``fill``
is the one path to a cache for a teacher and a data module (a ``fit`` calls it when it starts and gives the data module
the cache as its training set; ``distill cache`` calls it alone)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from distill.cache.fill import fill_share
from distill.cache.parallel import fill_in_processes, fill_processes
from distill.cache.store import Backend, ViewCache
from distill.cache.views import MixMode, MixSpec
from distill.choices import check_choice
from distill.console import say
from distill.images import ImageDataset
from distill.teacher import FrozenTeacher, TeacherSpec, frozen_teacher


@dataclass(frozen=True)
class CacheSettings:
    """What the cache records and how it is filled (``TeacherCache``'s arguments, documented there)."""

    views: int = 8
    mix: MixSpec = field(default_factory=MixSpec)
    cache_dir: str | None = None
    seed: int = 0
    batch_size: int = 64
    render: bool = True
    backend: str = "auto"
    processes: int | str = "auto"

    def folder(self, default_root_dir: str | Path) -> Path:
        """Where the cache files go: ``cache_dir``, else ``<default_root_dir>/teacher_cache``."""
        return Path(self.cache_dir or Path(default_root_dir) / "teacher_cache")


@dataclass
class FilledCache:
    """A complete cache and the wall time this call spent filling it (0 when it was complete already)."""

    cache: ViewCache
    fill_seconds: float


def fill_teacher_cache(teacher: FrozenTeacher, images: ImageDataset, num_classes: int, student_size: int,
                       settings: CacheSettings, cache_dir: Path, device: torch.device | str = "cpu",
                       num_workers: int = 0, rank: int = 0, world_size: int = 1,
                       barrier: Callable[[str], None] = lambda name: None,
                       folds: list[int] | None = None) -> FilledCache:
    """Fill (or reuse, or resume) the cache of ``teacher``'s outputs on views of the training ``images``, the views
    stored at ``student_size``. Under several processes (``world_size`` DDP ranks, ``barrier`` theirs) each fills
    its own share of the same files; on one CPU process the fill may use ``settings.processes`` processes.
    ``folds``: for cross-fitted teachers, each image's member (``ViewCache``; ``teacher_folds`` gives them)."""
    plain = images.augment_name == "none"
    if plain and (settings.views > 1 or settings.mix.enabled):
        say("teacher cache: data.augment is none, so one plain view per image is recorded")
    views, mix = (1, MixSpec()) if plain else (settings.views, settings.mix)
    device = torch.device(device)
    teacher.to(device)
    backend = settings.backend
    if backend == "auto":
        backend = "onnxruntime" if device.type == "cpu" else "torch"
    cache = ViewCache(teacher, images, Path(cache_dir), views, num_classes, student_size, settings.seed, mix,
                      settings.render, backend, folds)
    if rank == 0:
        cache.create()
        say(f"teacher cache {cache.stem}: {cache.n} images x {views} views, teacher in {backend}"
            + (f"; views at {cache.size}px take {cache.footprint_gib():.2f} GiB on disk (memory-mapped)"
               if cache.render else ""))
    barrier("teacher_cache_created")
    filled_here = not cache.complete()
    processes = fill_processes(settings.processes, device) if world_size == 1 else 1
    if filled_here and processes > 1:
        fill_in_processes(cache, processes, settings.batch_size)
    elif filled_here:
        fill_share(cache, rank, world_size, settings.batch_size, num_workers, device)
    barrier("teacher_cache_filled")
    return FilledCache(cache, cache.fill_seconds() if filled_here else 0.0)


def teacher_folds(source: Any, datamodule: Any) -> list[int] | None:
    """Each training image's fold for cross-fitted teachers (``TeacherSpec.cross_fit``: as many folds as members,
    drawn as their fine-tunes drew them, ``WasteDataModule.train_folds``); None for any other teacher."""
    if not isinstance(source, TeacherSpec) or not source.cross_fit:
        return None
    return datamodule.train_folds(len(source.cross_fit_weights()))


class TeacherCache(Callback):
    """Fill (or reuse, or resume) the teacher-output cache when ``fit`` starts (``fill_teacher_cache``), then train
    from it: the data module's training set becomes the cache's ``CachedViews``. The teacher is built here (the
    module never builds it: its batches carry the teacher's logits).

    Args:
        enabled: switch the cache off to run the teacher online on every batch.
        views: K views recorded per training image (1 when the data has ``augment: none``).
        mix: ``none``, ``mixup``, ``cutmix`` or ``both``: record views mixed with a partner image, the
            teacher run on the mixed image (function matching); mix_alpha: Beta(a, a) of the own share;
            mix_prob: the fraction of views that are mixed.
        cache_dir: folder of the cache files (default ``<default_root_dir>/teacher_cache``); share it
            between runs that distil several students from one teacher.
        seed: seed of the recorded views.
        batch_size: teacher batch size while filling.
        render: store every view at the student's input size (disk, memory-mapped) so epochs cost no
            augmentation; else views are rendered again every time they are drawn.
        backend: what runs the teacher during the fill: ``onnxruntime`` (float32; its speed against eager torch:
            ``benchmarks/fill_backend.py``; checked against eager float32 to 1e-3), ``torch`` (eager, in the teacher's precision), or ``auto``: ONNX Runtime on a
            CPU, else torch.
        processes: on a CPU, fill with this many processes, each running the teacher on its share of the
            views with ``torch threads // processes`` threads and rendering its own views (loader workers
            unused): ``auto`` = one process per 2 threads (one per thread on 2 threads). Several DDP ranks
            fill one share each instead.
        teacher, student_size: what it distils from (a ``TeacherSpec`` or a teacher module) and the student's input
            size, the size the views are stored at. The CLI links both from the model; in plain use they default to
            the attached module's ``teacher_source`` and its student's input size.
    """

    def __init__(self, enabled: bool = True, views: int = 8, mix: MixMode = "none", mix_alpha: float = 1.0,
                 mix_prob: float = 1.0, cache_dir: str | None = None, seed: int = 0, batch_size: int = 64,
                 render: bool = True, backend: Backend = "auto", processes: int | Literal["auto"] = "auto",
                 teacher: Any = None, student_size: int | None = None):
        if views < 1:
            raise ValueError(f"teacher_cache.views must be >= 1, got {views}")
        check_choice(backend, Backend, "teacher_cache.backend")
        fill_processes(processes)  # checked now, resolved for the device at the fill
        self.enabled, self.teacher, self.student_size = enabled, teacher, student_size
        self.settings = CacheSettings(views, MixSpec(mix, mix_alpha, mix_prob), cache_dir, seed, batch_size, render,
                                      backend, processes)
        self.cache: ViewCache | None = None
        self.fill_seconds = 0.0  # wall time of the fill this fit ran (0 when it found the cache complete)

    def fill(self, datamodule: Any, default_root_dir: str | Path, device: torch.device | str = "cpu",
             rank: int = 0, world_size: int = 1, barrier: Callable[[str], None] = lambda name: None,
             teacher: Any = None, student_size: int | None = None) -> FilledCache:
        """Fill (or reuse, or resume) the cache of this callback's teacher (or ``teacher``) on the training images of
        ``datamodule`` (a ``WasteDataModule`` set up for fit), the views stored at the student's input size: the one
        path to the teacher's outputs, for a ``fit`` (``setup``) and for ``distill cache`` alike."""
        source = teacher if teacher is not None else self.teacher
        images = getattr(datamodule, "train_images", None)
        if images is None:
            raise RuntimeError("TeacherCache needs a WasteDataModule passed to fit (datamodule=...), set up for fit")
        filled = fill_teacher_cache(
            frozen_teacher(source, datamodule.num_classes), images, datamodule.num_classes,
            student_size or self.student_size, self.settings, self.settings.folder(default_root_dir), device,
            datamodule.hparams.num_workers, rank, world_size, barrier, teacher_folds(source, datamodule))
        self.cache, self.fill_seconds = filled.cache, filled.fill_seconds
        return filled

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        source = self.teacher if self.teacher is not None else getattr(pl_module, "teacher_source", None)
        if stage != "fit" or not self.enabled or source is None:
            return  # nothing to distil from (a fine-tune, or no teacher): plain training
        filled = self.fill(trainer.datamodule, trainer.default_root_dir, trainer.strategy.root_device,
                           trainer.global_rank, trainer.world_size, trainer.strategy.barrier, source,
                           self.student_size or pl_module.student.preprocess.input_size)
        trainer.datamodule.use_teacher_outputs(filled.cache.dataset())  # the training set: the cached views
