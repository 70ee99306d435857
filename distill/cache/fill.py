"""Filling the cache: render each recorded view in loader workers, run the teacher on it (eager PyTorch or ONNX
Runtime), write its logits and the view at the student's size, batch by batch, saving progress as it goes (a
stopped fill resumes; SIGTERM and Ctrl-C keep every finished batch)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from distill.cache.store import ViewCache, _Progress, complete, job_share
from distill.cache.views import ViewRecord, render_view
from distill.console import duration, say
from distill.images import ImageDataset, stack_views
from distill.preprocess import model_input, resize_uint8
from distill.runtime import OnnxForward, onnx_session, to_onnx
from distill.stopping import StopRequested, stop_requests
from distill.teacher import flip_averaged

ONNX_TOLERANCE = 1e-3  # max |logit difference| from eager float32 accepted for the ONNX Runtime fill


class _ViewJobs(Dataset):
    """Jobs ``start .. stop-1`` (job = i * K + k) as items, so loader workers render views in parallel."""

    def __init__(self, dataset: ImageDataset, record: ViewRecord, start: int, stop: int):
        self.dataset, self.record, self.start, self.stop = dataset, record, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, item: int):
        job = self.start + item
        i, k = divmod(job, self.record.views)
        return render_view(self.dataset, self.record, i, k), job


def _yield_to_the_teacher(worker_id: int) -> None:
    """Loader workers render at the lowest CPU priority: when they and the teacher both want a core, the
    teacher gets it (its threads wait for each other, so one that is preempted stalls the rest); the
    workers fill the teacher's gaps, and run at full speed whenever the teacher waits for their batch."""
    if hasattr(os, "nice"):  # Unix
        os.nice(19)


def _collate_jobs(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of views (channels-last, ``stack_views``) and their job numbers."""
    return stack_views([view for view, _ in items]), torch.tensor([job for _, job in items])


def say_estimate(desc: str, rate: float, views_left: int) -> None:
    """The fill's one estimate line, after a short measured probe."""
    say(f"[estimate] {desc}: {rate:.0f} views/s, about {duration(views_left / rate)} left")


@torch.no_grad()
def fill(dataset: ImageDataset, record: ViewRecord, arrays: dict[str, np.memmap], progress: _Progress,
         step: Callable[[torch.Tensor, np.ndarray], dict[str, torch.Tensor]], desc: str, batch_size: int = 64,
         num_workers: int = 0, save_every: int = 4096, position: int = 0,
         report: Callable[[int], None] | None = None) -> None:
    """Render the views of ``progress``'s share not done yet, batch by batch; ``step(images, i)`` gives each
    array's values for the batch (teacher logits, resized views; ``i``: each view's image), written at their
    (i, k). ``position``: the progress bar's line; ``report(n)``: called with each batch's view count instead of drawing a bar and an
    estimate (the parent of several filling processes draws one for all)."""
    from tqdm.auto import tqdm

    jobs = DataLoader(_ViewJobs(dataset, record, progress.done, progress.stop), batch_size=batch_size,
                      num_workers=num_workers, collate_fn=_collate_jobs,
                      worker_init_fn=_yield_to_the_teacher if num_workers else None)
    views = record.views
    start, since_save = time.time() - progress.seconds, 0
    probe_start, probed = time.time(), 0
    written = progress.done  # jobs before this one are in the arrays

    def save() -> None:
        for array in arrays.values():
            array.flush()
        progress.save(written, time.time() - start)

    with tqdm(total=progress.stop - progress.start, initial=progress.done - progress.start, desc=desc,
              unit="view", dynamic_ncols=True, position=position, disable=report is not None) as bar, \
            stop_requests() as stop_requested:
        try:
            for images, job in jobs:
                if stop_requested():  # SIGTERM: what is filled was saved after the previous batch
                    raise StopRequested(f"stopped by SIGTERM: {desc} saved at {written - progress.start:,} of "
                                        f"{progress.stop - progress.start:,} views; run the same command again "
                                        "to resume the fill where it stopped")
                i, k = (job // views).numpy(), (job % views).numpy()
                for name, values in step(images, i).items():
                    arrays[name][i, k] = values.numpy()
                written = int(job[-1]) + 1
                since_save += len(job)
                bar.update(len(job))
                if report is not None:
                    report(len(job))
                probed += len(job)
                if probed >= 4 * batch_size and probe_start is not None and report is None:  # a short probe first
                    say_estimate(desc, probed / (time.time() - probe_start), progress.stop - written)
                    probe_start = None
                if since_save >= save_every or written == progress.stop or stop_requested():
                    save()
                    since_save = 0
        except KeyboardInterrupt:  # Ctrl-C: keep every finished batch
            save()
            raise


def _hwc(images: torch.Tensor) -> torch.Tensor:
    """``B x 3 x S x S`` -> ``B x S x S x 3``, the views file's layout (no copy for a channels-last batch)."""
    return images.permute(0, 2, 3, 1)


def fill_share(cache: ViewCache, rank: int = 0, world_size: int = 1, batch_size: int = 64, num_workers: int = 0,
               device: torch.device | str = "cpu",
               forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
               report: Callable[[int], None] | None = None) -> None:
    """Run the teacher on (and render) this process's share of the views not done yet
    (``forward``: the teacher's forward already made by ``teacher_forward(cache)``, else made here; ``report``: as
    ``fill``'s)."""
    total = cache.n * cache.views
    start, stop = job_share(total, rank, world_size)
    record = cache.record()
    size, render = cache.size, cache.render
    share = f", share {rank + 1}/{world_size}" if world_size > 1 else ""
    if not complete(cache.logits_file, total):  # a complete cache is never opened for writing
        arrays = {"logits": np.load(cache.logits_file, mmap_mode="r+")}
        if render:
            arrays["views"] = np.load(cache.views_file, mmap_mode="r+")
        progress = _Progress(cache.logits_file, rank, start, stop)
        # the views of the jobs already done were rendered in the same pass: both resume together
        forward = forward or teacher_forward(cache)

        def step(images: torch.Tensor, rows: np.ndarray) -> dict[str, torch.Tensor]:
            images = images.to(device)
            # cross-fitted teachers: each view to the member that left its image out
            logits = forward(images) if cache.folds is None else forward(images, cache.folds[rows])
            out = {"logits": logits.cpu()}
            if render:
                out["views"] = _hwc(resize_uint8(images, size))
            return out

        fill(cache.source, record, arrays, progress, step, f"teacher outputs ({cache.views} views/image{share})",
             batch_size, num_workers, position=rank, report=report)
        if render:
            _Progress(cache.views_file, rank, start, stop).save(stop, progress.seconds)
    elif render and not complete(cache.views_file, total):
        progress = _Progress(cache.views_file, rank, start, stop)
        fill(cache.source, record, {"views": np.load(cache.views_file, mmap_mode="r+")}, progress,
             lambda images, rows: {"views": _hwc(resize_uint8(images, size))}, f"rendering views at {size}px{share}",
             batch_size, num_workers, position=rank, report=report)


def teacher_forward(cache: ViewCache, onnx_files: list[Path] | None = None,
                    threads: int | None = None) -> Callable[..., torch.Tensor]:
    """The teacher's forward for the fill: eager PyTorch, or ONNX Runtime (float32) from ``onnx_files`` (made by
    ``export_teacher``; exported here when not given) on ``threads`` threads (default torch's). For cross-fitted
    teachers (``cache.folds``) it is called with the images and each one's member (``MemberRouting``)."""
    if cache.backend == "torch":
        if cache.folds is None:
            return cache.teacher
        return MemberRouting([cache.teacher.member(k) for k in range(len(cache.teacher.model.members))])
    if onnx_files is None:
        with tempfile.TemporaryDirectory() as tmp:
            sessions = [onnx_session(path, threads) for path in export_teacher(cache, tmp)]
    else:
        sessions = [onnx_session(path, threads) for path in onnx_files]

    def in_session(session) -> Callable[[torch.Tensor], torch.Tensor]:
        onnx = OnnxForward(session)

        def forward(images: torch.Tensor) -> torch.Tensor:
            return onnx(model_input(images, cache.teacher.preprocess))

        return flip_averaged(forward) if cache.teacher.flip_average else forward

    forwards = [in_session(session) for session in sessions]
    return forwards[0] if cache.folds is None else MemberRouting(forwards)


class MemberRouting:
    """Cross-fitted teachers in the fill: ``(images, members)`` -> each image's logits from its own member only
    (a batch of one image's views, the usual case, is one member's forward: the fill costs one teacher's)."""

    def __init__(self, forwards: list[Callable[[torch.Tensor], torch.Tensor]]):
        self.forwards = forwards

    def __call__(self, images: torch.Tensor, members: np.ndarray) -> torch.Tensor:
        present = np.unique(members)
        if len(present) == 1:  # the usual batch: one image's views
            return self.forwards[present[0]](images)
        parts = {k: torch.from_numpy(np.flatnonzero(members == k)) for k in present}
        logits = {k: self.forwards[k](images[rows]) for k, rows in parts.items()}
        first = next(iter(logits.values()))
        out = first.new_empty((len(images), *first.shape[1:]))
        for k, rows in parts.items():
            out[rows] = logits[k]
        return out


def export_teacher(cache: ViewCache, folder: str | Path) -> list[Path]:
    """The teacher as ONNX in ``folder`` (cross-fitted teachers: one file per member, in member order), each
    checked against eager float32 (``ONNX_TOLERANCE``) before any use."""
    example = model_input(stack_views([cache.source.view(i, i) for i in range(min(4, cache.n))]),
                          cache.teacher.preprocess)
    model = cache.teacher.model.eval()
    models = list(model.members) if cache.folds is not None else [model]
    paths = []
    for k, module in enumerate(models):
        name = "teacher.onnx" if len(models) == 1 else f"teacher_member{k}.onnx"
        path = to_onnx(module, Path(folder) / name, example)
        with torch.no_grad():
            gap = float((OnnxForward(onnx_session(path))(example) - module(example).float()).abs().max())
        if gap > ONNX_TOLERANCE:
            raise RuntimeError(f"the teacher in ONNX Runtime differs from PyTorch float32 by {gap:.2e} (> "
                               f"{ONNX_TOLERANCE}): set teacher_cache.backend: torch")
        paths.append(path)
    return paths
