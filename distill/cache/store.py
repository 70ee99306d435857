"""The cache's store: memory-mapped arrays of teacher logits and rendered views under a key of everything they
depend on, with per-share progress files (resume, several processes) and checks of size and checksum before reuse."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from distill.cache.replay import CachedViews
from distill.cache.views import MixSpec, ViewRecord, draw_views
from distill.checkpoint import atomic_write, atomic_write_text
from distill.choices import check_choice
from distill.console import say
from distill.images import ImageDataset, files_key
from distill.teacher import FrozenTeacher
from distill.transforms import definition

FORMAT_VERSION = 3  # 3: views seeded with one shared stream per view (distill.transforms.seed_pipeline)
Backend = Literal["auto", "torch", "onnxruntime"]


def _fingerprint(teacher: FrozenTeacher) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(teacher.preprocess).encode())
    return digest.hexdigest()


def cache_key(teacher: FrozenTeacher, dataset: ImageDataset, views: int, seed: int, mix: MixSpec,
              backend: str = "torch", folds: list[int] | None = None) -> str:
    """Hash of everything the cached outputs depend on (``backend``: what runs the teacher's forward; ``folds``:
    each image's cross-fitted member)."""
    return files_key(dataset.samples, {
        "teacher": _fingerprint(teacher), "precision": teacher.precision, "backend": backend,
        "size": dataset.size, "keep_aspect": dataset.keep_aspect,
        "augment": definition(dataset.augment),  # what the preset does, not its name
        "views": views, "seed": seed, "mix": asdict(mix), "format": FORMAT_VERSION,
        # named only when on, so caches filled before the option existed keep their key
        **({"flip_average": True} if teacher.flip_average else {}),
        **({"cross_fit_folds": list(folds)} if folds is not None else {})})


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


def check_folds(teacher: FrozenTeacher, dataset: ImageDataset, folds: list[int] | None, mix: MixSpec) -> None:
    """Cross-fitted teachers need one fold per image, each naming one of their members, and unmixed views (a
    mixed view holds a partner image the member may have trained on); other teachers no folds."""
    if not teacher.cross_fit:
        if folds is not None:
            raise ValueError("cache folds were given for a teacher that is not cross-fitted (teacher.cross_fit)")
        return
    members = len(teacher.model.members)
    if folds is None or len(folds) != len(dataset):
        raise ValueError(f"cross-fitted teachers label each training image with the member that left it out: give "
                         f"the cache {len(dataset)} folds (one per image), got {None if folds is None else len(folds)}")
    if mix.enabled:
        raise ValueError(f"teacher_cache.mix={mix.mode!r} with cross-fitted teachers: a mixed view holds a partner "
                         "image that the labelling member may have trained on; set teacher_cache.mix: none")
    if min(folds) < 0 or max(folds) >= members:
        raise ValueError(f"cache folds must name members 0 .. {members - 1}, got {min(folds)} .. {max(folds)}")


class ViewCache:
    """One cache entry: its record of views, the teacher's logits and the views at the student's size.

    The steps, in order (the callback puts a barrier between them when several processes run):
    ``create`` (one process), ``fill_share`` (every process, its own share), then ``dataset``.

    ``folds``: for cross-fitted teachers (``FrozenTeacher.cross_fit``), the member that labels each image (the one
    fine-tuned without it); required with them, refused without."""

    def __init__(self, teacher: FrozenTeacher, dataset: ImageDataset, cache_dir: str | Path, views: int,
                 num_classes: int, student_size: int, seed: int = 0, mix: MixSpec = MixSpec(),
                 render: bool = True, backend: str = "torch", folds: list[int] | None = None):
        if backend == "auto":
            raise ValueError("fill backend 'auto': resolve it first (teacher_cache.backend)")
        check_choice(backend, Backend, "fill backend")
        check_folds(teacher, dataset, folds, mix)
        self.teacher, self.source, self.views, self.seed, self.mix = teacher, dataset, views, seed, mix
        self.num_classes, self.size, self.backend = num_classes, student_size, backend
        self.folds = None if folds is None else np.asarray(folds, dtype=np.int64)
        self.render = render and student_size < dataset.size
        key = cache_key(teacher, dataset, views, seed, mix, backend, folds)
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
        # "hwc-u8": ``S x S x 3`` per view (batched channels-last in one copy), rendered by the uint8 resize
        # (``resize_uint8``); views stored as planes, resized through float, are not reused (within one grey
        # level, but not the same pixels). The logits do not depend on either.
        return self.stem.with_name(f"{self.stem.name}.{self.size}px-hwc-u8.npy")

    def footprint_gib(self) -> float:
        """Disk taken by the views at the student's size (the logits are small)."""
        return self.n * self.views * 3 * self.size**2 / 2**30 if self.render else 0.0

    def arrays(self) -> dict[Path, tuple[tuple[int, ...], type]]:
        """The cache's memory-mapped files, each with its shape and dtype."""
        out = {self.logits_file: ((self.n, self.views, self.num_classes), np.float32)}
        if self.render:
            out[self.views_file] = ((self.n, self.views, self.size, self.size, 3), np.uint8)
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

    def fill_seconds(self) -> float:
        """Wall time of the last fill (the slowest process, when several filled it): the views' record when
        they are rendered (a fill of both writes the same time to both; a pass that only renders the views
        again, the teacher's logits complete, writes its own), else the logits'."""
        return self.progress_seconds(self.views_file if self.render else self.logits_file)

    @staticmethod
    def progress_seconds(array: Path) -> float:
        """Seconds recorded by the progress files of ``array`` (the slowest process)."""
        files = array.parent.glob(f"{array.stem}.progress*.json")
        return max((json.loads(p.read_text())["seconds"] for p in files), default=0.0)

    def dataset(self) -> "CachedViews":
        """The training set replaying the cache (read-only memory maps)."""
        views = np.load(self.views_file, mmap_mode="r") if self.render else None
        return CachedViews(self.source, self.record(), np.load(self.logits_file, mmap_mode="r"), views)
