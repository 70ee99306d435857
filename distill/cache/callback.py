"""``TeacherCache``, the training callback: when ``fit`` starts, fill (or reuse, or resume) the cache, hand it to
the data module as its training set and release the module's teacher."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
from lightning.pytorch.callbacks import Callback

from distill.cache.fill import fill_share
from distill.cache.parallel import fill_in_processes, fill_processes
from distill.cache.store import Backend, ViewCache
from distill.cache.views import MixMode, MixSpec
from distill.choices import check_choice
from distill.console import say

MIXUP_WITH_CACHE = ("model.mixup mixes images the cached teacher never saw: record mixed views in the teacher cache "
                    "instead (teacher_cache.mix), or set model.mixup 0, or teacher_cache.enabled false")


class TeacherCache(Callback):
    """Fill (or reuse, or resume) the teacher-output cache when ``fit`` starts, then train from it.

    The data module's training set is wrapped in ``CachedViews`` and the module's teacher is released.
    Under several processes (DDP) each fills its own share of the same files, then all read them.

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
        backend: what runs the teacher during the fill: ``onnxruntime`` (float32; 2.2x eager bf16 and 4.4x
            eager float32 on this project's CPU, ``benchmarks/fill_backend.py``; checked against eager
            float32 to 1e-3), ``torch`` (eager, in the teacher's precision), or ``auto``: ONNX Runtime on a
            CPU, else torch.
        processes: on a CPU, fill with this many processes, each running the teacher on its share of the
            views with ``torch threads // processes`` threads and rendering its own views (loader workers
            unused): ``auto`` = one process per 2 threads (one per thread on 2 threads). Several DDP ranks
            fill one share each instead.
    """

    def __init__(self, enabled: bool = True, views: int = 8, mix: MixMode = "none", mix_alpha: float = 1.0,
                 mix_prob: float = 1.0, cache_dir: str | None = None, seed: int = 0, batch_size: int = 64,
                 render: bool = True, backend: Backend = "auto", processes: int | Literal["auto"] = "auto"):
        if views < 1:
            raise ValueError(f"teacher_cache.views must be >= 1, got {views}")
        self.mix = MixSpec(mix, mix_alpha, mix_prob)
        self.enabled, self.render, self.views, self.cache_dir = enabled, render, views, cache_dir
        check_choice(backend, Backend, "teacher_cache.backend")
        self.seed, self.batch_size, self.backend = seed, batch_size, backend
        fill_processes(processes)  # checked now, resolved for the device at the fill
        self.processes = processes
        self.cache: ViewCache | None = None
        self.fill_seconds = 0.0  # wall time of the fill this fit ran (0 when it found the cache complete)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        cache = self.prepare(trainer, pl_module, trainer.datamodule)
        if cache is not None:
            trainer.datamodule.use_teacher_outputs(cache.dataset())
            pl_module.release_teacher()  # training now reads the cache; the teacher is no longer needed

    def prepare(self, trainer: L.Trainer, pl_module: L.LightningModule, datamodule) -> ViewCache | None:
        """Fill (or reuse, or resume) the cache of ``pl_module``'s teacher on ``datamodule``'s training images
        (set up for fit); None when there is nothing to cache (switched off, no teacher). ``distill cache`` calls
        it without a fit."""
        if not self.enabled or not hasattr(pl_module, "build_teacher"):
            return None
        teacher = pl_module.build_teacher()
        if teacher is None:
            return None  # nothing to distil from: plain training
        if getattr(pl_module.hparams, "mixup", 0) > 0:  # the CLI refuses this when it parses the config
            raise ValueError(MIXUP_WITH_CACHE)
        dataset = getattr(datamodule, "train_images", None)
        if dataset is None:
            raise RuntimeError("TeacherCache needs a WasteDataModule passed to fit (datamodule=...), set up for fit")
        if dataset.augment_name == "none" and (self.views > 1 or self.mix.enabled):
            say("teacher cache: data.augment is none, so one plain view per image is recorded")
        plain = dataset.augment_name == "none"
        views, mix = (1, MixSpec()) if plain else (self.views, self.mix)
        device = trainer.strategy.root_device
        teacher.to(device)
        cache_dir = Path(self.cache_dir or Path(trainer.default_root_dir) / "teacher_cache")
        backend = self.backend
        if backend == "auto":
            backend = "onnxruntime" if device.type == "cpu" else "torch"
        self.cache = cache = ViewCache(teacher, dataset, cache_dir, views, pl_module.hparams.num_classes,
                                       pl_module.student.preprocess.input_size, self.seed, mix, self.render,
                                       backend)
        if trainer.global_rank == 0:
            cache.create()
            say(f"teacher cache {cache.stem}: {cache.n} images x {views} views, teacher in {backend}"
                + (f"; views at {cache.size}px take {cache.footprint_gib():.2f} GiB on disk (memory-mapped)"
                   if cache.render else ""))
        trainer.strategy.barrier("teacher_cache_created")
        filled_here = not cache.complete()
        processes = fill_processes(self.processes, device) if trainer.world_size == 1 else 1
        if filled_here and processes > 1:
            fill_in_processes(cache, processes, self.batch_size)
        elif filled_here:
            fill_share(cache, trainer.global_rank, trainer.world_size, self.batch_size,
                       getattr(datamodule.hparams, "num_workers", 0), device)
        trainer.strategy.barrier("teacher_cache_filled")
        if filled_here:
            self.fill_seconds = cache.fill_seconds()
        return cache
