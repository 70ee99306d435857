"""Teacher-output cache: run the teacher once, distil many students (Fast Knowledge Distillation,
Shen & Xing, ECCV 2022), with mixed views for function matching (Beyer et al., CVPR 2022).

For every training image, K views are recorded. A view is the image augmented by the pipeline seeded
with its seed (the seed reproduces every parameter: flips, affine matrix, colour factors, dropout holes)
and, for a mixed view, blended with a partner image's own augmented view: mixup (own share ``w``) or
CutMix (the partner pasted into a box; ``w`` = the own image's remaining area). The teacher runs once
on each view at its own input size; its logits are stored. In the same pass every view is resized to
the student's input size and stored too, so training reads pixels and logits and augments nothing.
``CachedViews`` (a dataset wrapper, like torchdistill's ``CacheableDataset``) replays one recorded view
of each image per epoch, drawn anew each time, with the teacher's logits for exactly that view.

Files in ``cache_dir``, named by a hash of everything the outputs depend on (teacher weights and
precision, image files, the augmentation pipeline's own serialisation, views, mixing, seed; see
``cache_key``), so outputs made under another definition are not reused:
``<stem>.record.pt`` (seeds, partners, weights, boxes), ``<stem>.logits.npy`` (float32 N x K x C),
``<stem>.<S>px.npy`` (uint8 N x K x 3 x S x S, the student's views) and a ``.progress.json`` beside each
``.npy``. Both arrays are memory-mapped: RAM holds what the page cache keeps. A fill that is stopped
resumes where it stopped; several processes (DDP ranks) fill disjoint shares of the same files.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from distill.checkpoint import atomic_write, atomic_write_text
from distill.choices import check_choice
from distill.console import duration, say
from distill.data import ImageDataset, files_key
from distill.preprocess import model_input, resize_uint8
from distill.runtime import OnnxForward
from distill.stopping import StopRequested, stop_requests
from distill.teacher import FrozenTeacher
from distill.transforms import definition

FORMAT_VERSION = 2
MixMode = Literal["none", "mixup", "cutmix", "both"]
Backend = Literal["auto", "torch", "onnxruntime"]
ONNX_TOLERANCE = 1e-3  # max |logit difference| from eager float32 accepted for the ONNX Runtime fill


@dataclass(frozen=True)
class MixSpec:
    """How recorded views are mixed: ``mode`` (none, mixup, cutmix, or both at random), the Beta(alpha,
    alpha) of the own image's share, and the fraction ``prob`` of views that are mixed."""

    mode: MixMode = "none"
    alpha: float = 1.0
    prob: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.mode, MixMode, "teacher_cache.mix")
        if self.alpha <= 0:
            raise ValueError(f"teacher_cache.mix_alpha must be > 0, got {self.alpha}")
        if not 0 <= self.prob <= 1:
            raise ValueError(f"teacher_cache.mix_prob must be in [0, 1], got {self.prob}")

    @property
    def enabled(self) -> bool:
        return self.mode != "none" and self.prob > 0


@dataclass
class ViewRecord:
    """Per image ``i`` and view ``k``: how to make the view again. ``partners[i, k] = -1``: not mixed."""

    seeds: torch.Tensor  # int64 [N, K]
    partners: torch.Tensor  # int64 [N, K]
    partner_seeds: torch.Tensor  # int64 [N, K]
    weights: torch.Tensor  # float32 [N, K]: the own image's share of the view (1 = not mixed)
    boxes: torch.Tensor  # int64 [N, K, 4]: CutMix box (x0, y0, x1, y1) at the base size; zeros = mixup

    @property
    def views(self) -> int:
        return int(self.seeds.shape[1])

    @property
    def mixed(self) -> bool:
        return bool((self.partners >= 0).any())


def draw_views(n_images: int, views: int, size: int, seed: int, mix: MixSpec = MixSpec()) -> ViewRecord:
    """The recorded views of ``n_images`` images, drawn from ``seed`` (the same on every process)."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=(n_images, views), dtype=np.int64)
    partners = np.full((n_images, views), -1, dtype=np.int64)
    partner_seeds = np.zeros((n_images, views), dtype=np.int64)
    weights = np.ones((n_images, views), dtype=np.float32)
    boxes = np.zeros((n_images, views, 4), dtype=np.int64)
    if mix.enabled and n_images > 1:
        mixed = rng.random((n_images, views)) < mix.prob
        offsets = rng.integers(1, n_images, size=(n_images, views))  # never the image itself
        partners = np.where(mixed, (np.arange(n_images)[:, None] + offsets) % n_images, -1)
        partner_seeds = rng.integers(0, 2**31 - 1, size=(n_images, views), dtype=np.int64)
        lam = rng.beta(mix.alpha, mix.alpha, size=(n_images, views))
        cut = {"mixup": np.zeros_like(mixed), "cutmix": np.ones_like(mixed),
               "both": rng.random((n_images, views)) < 0.5}[mix.mode] & mixed
        # CutMix box of area (1 - lam) S^2, centred uniformly, clipped; the weight is the area really kept
        side = size * np.sqrt(1 - lam)
        cx, cy = rng.uniform(0, size, size=(2, n_images, views))
        x0, x1 = np.clip(cx - side / 2, 0, size).round(), np.clip(cx + side / 2, 0, size).round()
        y0, y1 = np.clip(cy - side / 2, 0, size).round(), np.clip(cy + side / 2, 0, size).round()
        kept = 1 - (x1 - x0) * (y1 - y0) / size**2
        boxes = np.where(cut[..., None], np.stack([x0, y0, x1, y1], -1), 0).astype(np.int64)
        weights = np.where(mixed, np.where(cut, kept, lam), 1.0).astype(np.float32)
    return ViewRecord(*(torch.from_numpy(a) for a in (seeds, partners, partner_seeds, weights, boxes)))


def render_view(dataset: ImageDataset, record: ViewRecord, i: int, k: int) -> torch.Tensor:
    """View ``k`` of image ``i`` at the base size, uint8 ``3 x S x S``, exactly as recorded."""
    own = dataset.view(i, int(record.seeds[i, k]))
    partner = int(record.partners[i, k])
    if partner < 0:
        return own
    other = dataset.view(partner, int(record.partner_seeds[i, k]))
    x0, y0, x1, y1 = (int(v) for v in record.boxes[i, k])
    if x1 > x0 and y1 > y0:  # CutMix
        out = own.clone()
        out[:, y0:y1, x0:x1] = other[:, y0:y1, x0:x1]
        return out
    w = float(record.weights[i, k])
    return (w * own.float() + (1 - w) * other.float()).round().clamp(0, 255).to(torch.uint8)


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


def _fingerprint(teacher: FrozenTeacher) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(teacher.preprocess).encode())
    return digest.hexdigest()


def cache_key(teacher: FrozenTeacher, dataset: ImageDataset, views: int, seed: int, mix: MixSpec,
              backend: str = "torch") -> str:
    """Hash of everything the cached outputs depend on (``backend``: what runs the teacher's forward)."""
    return files_key(dataset.samples, {
        "teacher": _fingerprint(teacher), "precision": teacher.precision, "backend": backend,
        "size": dataset.size, "keep_aspect": dataset.keep_aspect,
        "augment": definition(dataset.augment),  # what the preset does, not its name
        "views": views, "seed": seed, "mix": asdict(mix), "format": FORMAT_VERSION})


def job_share(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of ``total`` jobs for process ``rank`` of ``world_size``."""
    return total * rank // world_size, total * (rank + 1) // world_size


class _Progress:
    """How many jobs of one process's share of one array are done; written atomically as jobs finish. A
    finished share also records the checksum of its rows (``share_checksum``), checked before every reuse."""

    def __init__(self, array: Path, rank: int, start: int, stop: int):
        self.array = array
        self.path = array.with_name(f"{array.stem}.progress{rank}.json")
        self.start, self.stop = start, stop
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.done = saved.get("done", start) if saved.get("share") == [start, stop] else start
        self.seconds = saved.get("seconds", 0.0) if self.done > start else 0.0

    def save(self, done: int, seconds: float) -> None:
        self.done, self.seconds = done, seconds
        record = {"share": [self.start, self.stop], "done": done, "seconds": seconds}
        if done == self.stop:
            record["sha256"] = share_checksum(np.load(self.array, mmap_mode="r"), self.start, self.stop)
        atomic_write_text(self.path, json.dumps(record))


def share_checksum(array: np.ndarray, start: int, stop: int) -> str:
    """sha256 of jobs ``start .. stop-1`` of an ``N x K x ...`` array (job = i * K + k)."""
    rows = array.reshape(-1, *array.shape[2:])
    digest = hashlib.sha256()
    for begin in range(start, stop, 4096):
        digest.update(np.ascontiguousarray(rows[begin:min(stop, begin + 4096)]).tobytes())
    return digest.hexdigest()


def intact_size(path: Path, shape: tuple[int, ...], dtype) -> bool:
    """Whether the ``.npy`` file at ``path`` has the header of ``shape``/``dtype`` and every byte of its data."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            offset = f.tell()
    except (OSError, ValueError):
        return False
    if tuple(header[0]) != tuple(shape) or np.dtype(header[2]) != np.dtype(dtype):
        return False
    return path.stat().st_size == offset + int(np.prod(shape)) * np.dtype(dtype).itemsize


def verify(array: Path, shape: tuple[int, ...], dtype) -> list[str]:
    """Check a cache array against its record: a file of the wrong size is removed with every progress file
    (all of it is filled again); a finished share whose checksum differs loses its progress file (that share
    is filled again). Returns what was found, one line each."""
    found = []
    progress_files = sorted(array.parent.glob(f"{array.stem}.progress*.json"))
    if not array.is_file():
        return found
    if not intact_size(array, shape, dtype):
        found.append(f"{array} has the wrong size for {shape} {np.dtype(dtype).name} (truncated or overwritten)")
        array.unlink()
        for p in progress_files:
            p.unlink()
        return found
    values = np.load(array, mmap_mode="r")
    for p in progress_files:
        saved = json.loads(p.read_text())
        start, stop = saved["share"]
        if saved.get("done") == stop and saved.get("sha256") != share_checksum(values, start, stop):
            found.append(f"{array}: views {start}..{stop - 1} do not match the checksum written with them")
            p.unlink()
    return found


def complete(array: Path, total: int) -> bool:
    """Whether every share of ``array`` is done (the shares of any number of processes that cover it)."""
    done = 0
    for p in array.parent.glob(f"{array.stem}.progress*.json"):
        saved = json.loads(p.read_text())
        start, stop = saved["share"]
        done += saved["done"] - start if saved["done"] == stop else 0
    return array.is_file() and done >= total


def _create_array(path: Path, shape: tuple[int, ...], dtype) -> None:
    """Create the ``.npy`` file at ``path`` (zeros) if it is not there yet; an existing one is not touched."""
    if path.is_file():
        return
    tmp = path.with_name(path.name + ".tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    del array
    tmp.replace(path)


@torch.no_grad()
def fill(dataset: ImageDataset, record: ViewRecord, arrays: dict[str, np.memmap], progress: _Progress,
         step: Callable[[torch.Tensor], dict[str, torch.Tensor]], desc: str, batch_size: int = 64,
         num_workers: int = 0, save_every: int = 4096) -> None:
    """Render the views of ``progress``'s share not done yet, batch by batch; ``step(images)`` gives each
    array's values for the batch (teacher logits, resized views), written at their (i, k)."""
    from tqdm.auto import tqdm

    jobs = DataLoader(_ViewJobs(dataset, record, progress.done, progress.stop), batch_size=batch_size,
                      num_workers=num_workers)
    views = record.views
    start, since_save = time.time() - progress.seconds, 0
    probe_start, probed = time.time(), 0
    written = progress.done  # jobs before this one are in the arrays

    def save() -> None:
        for array in arrays.values():
            array.flush()
        progress.save(written, time.time() - start)

    with tqdm(total=progress.stop - progress.start, initial=progress.done - progress.start, desc=desc,
              unit="view", dynamic_ncols=True) as bar, stop_requests() as stop_requested:
        try:
            for images, job in jobs:
                if stop_requested():  # SIGTERM: what is filled was saved after the previous batch
                    raise StopRequested(f"stopped by SIGTERM: {desc} saved at {written - progress.start:,} of "
                                        f"{progress.stop - progress.start:,} views; run the same command again "
                                        "to resume the fill where it stopped")
                i, k = (job // views).numpy(), (job % views).numpy()
                for name, values in step(images).items():
                    arrays[name][i, k] = values.numpy()
                written = int(job[-1]) + 1
                since_save += len(job)
                bar.update(len(job))
                probed += len(job)
                if probed >= 4 * batch_size and probe_start is not None:  # a short measured probe, then the estimate
                    rate = probed / (time.time() - probe_start)
                    say(f"[estimate] {desc}: {rate:.0f} views/s, about {duration((progress.stop - written) / rate)}"
                        " left")
                    probe_start = None
                if since_save >= save_every or written == progress.stop or stop_requested():
                    save()
                    since_save = 0
        except KeyboardInterrupt:  # Ctrl-C: keep every finished batch
            save()
            raise


class ViewCache:
    """One cache entry: its record of views, the teacher's logits and the views at the student's size.

    The steps, in order (the callback puts a barrier between them when several processes run):
    ``create`` (one process), ``fill_share`` (every process, its own share), then ``dataset``."""

    def __init__(self, teacher: FrozenTeacher, dataset: ImageDataset, cache_dir: str | Path, views: int,
                 num_classes: int, student_size: int, seed: int = 0, mix: MixSpec = MixSpec(),
                 render: bool = True, backend: str = "torch"):
        if backend == "auto":
            raise ValueError("fill backend 'auto': resolve it first (teacher_cache.backend)")
        check_choice(backend, Backend, "fill backend")
        self.teacher, self.source, self.views, self.seed, self.mix = teacher, dataset, views, seed, mix
        self.num_classes, self.size, self.backend = num_classes, student_size, backend
        self.render = render and student_size < dataset.size
        key = cache_key(teacher, dataset, views, seed, mix, backend)
        self.stem = Path(cache_dir) / f"teacher_{key[:20]}"
        self.n = len(dataset)

    @property
    def record_file(self) -> Path:
        return self.stem.with_name(self.stem.name + ".record.pt")

    @property
    def logits_file(self) -> Path:
        return self.stem.with_name(self.stem.name + ".logits.npy")

    @property
    def views_file(self) -> Path:
        return self.stem.with_name(f"{self.stem.name}.{self.size}px.npy")

    def footprint_gib(self) -> float:
        """Disk taken by the views at the student's size (the logits are small)."""
        return self.n * self.views * 3 * self.size**2 / 2**30 if self.render else 0.0

    def arrays(self) -> dict[Path, tuple[tuple[int, ...], type]]:
        """The cache's memory-mapped files, each with its shape and dtype."""
        out = {self.logits_file: ((self.n, self.views, self.num_classes), np.float32)}
        if self.render:
            out[self.views_file] = ((self.n, self.views, 3, self.size, self.size), np.uint8)
        return out

    def verify(self) -> list[str]:
        """Check sizes and checksums before reuse; damaged parts are removed so that they are filled again."""
        found = [line for path, (shape, dtype) in self.arrays().items() for line in verify(path, shape, dtype)]
        for line in found:
            say(f"teacher cache damaged: {line}; filling it again")
        return found

    def create(self) -> None:
        """Draw and save the record; check what is there; create missing arrays (once, before any process
        fills them)."""
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self.verify()
        if not self.record_file.is_file():
            record = draw_views(self.n, self.views, self.source.size, self.seed, self.mix)
            atomic_write(self.record_file, lambda tmp: torch.save(asdict(record), tmp))
        for path, (shape, dtype) in self.arrays().items():
            _create_array(path, shape, dtype)

    def record(self) -> ViewRecord:
        return ViewRecord(**torch.load(self.record_file, weights_only=True))

    def complete(self) -> bool:
        total = self.n * self.views
        return complete(self.logits_file, total) and (not self.render or complete(self.views_file, total))

    def fill_share(self, rank: int = 0, world_size: int = 1, batch_size: int = 64, num_workers: int = 0,
                   device: torch.device | str = "cpu",
                   forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Run the teacher on (and render) this process's share of the views not done yet
        (``forward``: the teacher's forward already made by ``self.forward()``, else made here)."""
        total = self.n * self.views
        start, stop = job_share(total, rank, world_size)
        record = self.record()
        size, render = self.size, self.render
        if not complete(self.logits_file, total):  # a complete cache is never opened for writing
            arrays = {"logits": np.load(self.logits_file, mmap_mode="r+")}
            if render:
                arrays["views"] = np.load(self.views_file, mmap_mode="r+")
            progress = _Progress(self.logits_file, rank, start, stop)
            # the views of the jobs already done were rendered in the same pass: both resume together
            forward = forward or self.forward()

            def step(images: torch.Tensor) -> dict[str, torch.Tensor]:
                out = {"logits": forward(images.to(device)).cpu()}
                if render:
                    out["views"] = resize_uint8(images, size)
                return out

            fill(self.source, record, arrays, progress, step, f"teacher outputs ({self.views} views/image)",
                 batch_size, num_workers)
            if render:
                _Progress(self.views_file, rank, start, stop).save(stop, progress.seconds)
        elif render and not complete(self.views_file, total):
            progress = _Progress(self.views_file, rank, start, stop)
            fill(self.source, record, {"views": np.load(self.views_file, mmap_mode="r+")}, progress,
                 lambda images: {"views": resize_uint8(images, size)}, f"rendering views at {size}px",
                 batch_size, num_workers)

    def forward(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The teacher's forward for the fill: eager PyTorch, or ONNX Runtime (float32)."""
        if self.backend == "torch":
            return self.teacher
        example = model_input(torch.stack([self.source.view(i, i) for i in range(min(4, self.n))]),
                              self.teacher.preprocess)
        with tempfile.TemporaryDirectory() as tmp:
            onnx = OnnxForward(self.teacher.model, Path(tmp) / "teacher.onnx", example)
        with torch.no_grad():
            gap = float((onnx(example) - self.teacher.model(example).float()).abs().max())
        if gap > ONNX_TOLERANCE:
            raise RuntimeError(f"the teacher in ONNX Runtime differs from PyTorch float32 by {gap:.2e} (> "
                               f"{ONNX_TOLERANCE}): set teacher_cache.backend: torch")
        return lambda images: onnx(model_input(images, self.teacher.preprocess))

    def fill_seconds(self) -> float:
        """Wall time the teacher fill took (the slowest process, when several filled it)."""
        return self.progress_seconds(self.logits_file)

    @staticmethod
    def progress_seconds(array: Path) -> float:
        """Seconds recorded by the progress files of ``array`` (the slowest process)."""
        files = array.parent.glob(f"{array.stem}.progress*.json")
        return max((json.loads(p.read_text())["seconds"] for p in files), default=0.0)

    def dataset(self) -> "CachedViews":
        """The training set replaying the cache (read-only memory maps)."""
        views = np.load(self.views_file, mmap_mode="r") if self.render else None
        return CachedViews(self.source, self.record(), np.load(self.logits_file, mmap_mode="r"), views)


class CachedViews(Dataset):
    """A training set whose items replay one recorded view per image (drawn anew each time) with the
    teacher's logits for exactly that view: ``{"image", "label", "index", "teacher_logits"}``, plus
    ``partner_label`` and ``mix_weight`` (the own label's share) when the cache records mixed views.

    ``rendered``: the views already resized to the student's size; else each view is rendered again from
    its record at the base size."""

    def __init__(self, dataset: ImageDataset, record: ViewRecord, logits: np.ndarray,
                 rendered: np.ndarray | None = None):
        self.dataset, self.record, self.logits, self.rendered = dataset, record, logits, rendered
        self.labels = torch.tensor([s.label for s in dataset.samples])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        k = int(torch.randint(0, self.record.views, ()).item())
        if self.rendered is not None:
            image = torch.from_numpy(np.array(self.rendered[index, k]))
        else:
            image = render_view(self.dataset, self.record, index, k)
        item = {"image": image, "label": int(self.labels[index]), "index": index,
                "teacher_logits": torch.from_numpy(np.array(self.logits[index, k]))}
        if self.record.mixed:
            partner = int(self.record.partners[index, k])
            item["partner_label"] = int(self.labels[partner]) if partner >= 0 else item["label"]
            item["mix_weight"] = float(self.record.weights[index, k])
        return item


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
    """

    def __init__(self, enabled: bool = True, views: int = 8, mix: MixMode = "none", mix_alpha: float = 1.0,
                 mix_prob: float = 1.0, cache_dir: str | None = None, seed: int = 0, batch_size: int = 64,
                 render: bool = True, backend: Backend = "auto"):
        if views < 1:
            raise ValueError(f"teacher_cache.views must be >= 1, got {views}")
        self.mix = MixSpec(mix, mix_alpha, mix_prob)
        self.enabled, self.render, self.views, self.cache_dir = enabled, render, views, cache_dir
        check_choice(backend, Backend, "teacher_cache.backend")
        self.seed, self.batch_size, self.backend = seed, batch_size, backend
        self.cache: ViewCache | None = None
        self.fill_seconds = 0.0  # wall time of the fill this fit ran (0 when it found the cache complete)

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
        if filled_here:
            cache.fill_share(trainer.global_rank, trainer.world_size, self.batch_size,
                             getattr(datamodule.hparams, "num_workers", 0), device)
        trainer.strategy.barrier("teacher_cache_filled")
        if filled_here:
            self.fill_seconds = cache.fill_seconds()
        datamodule.train_set = cache.dataset()
        pl_module.release_teacher()  # training now reads the cache; the teacher is no longer needed
