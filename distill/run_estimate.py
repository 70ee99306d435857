"""How long a pipeline run will take, said before its first stage, and how far it is after each one.

Each stage's work is counted from the data (labelled images, the recipe's held-out, val and batch settings) and its
parsed config (epochs left, batches, cached views), and priced by a short probe on random batches: one training step of
each network at its input size and batch size, and the teacher's forward pass in the fill's backend. Data loading and
augmentation are not probed, so the figure is a floor; after each stage the time left is scaled by how the finished
stages compared with their estimates.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill.console import duration, say


@dataclass(frozen=True)
class StageEstimate:
    """One stage of a run: its folder name, the seconds it should take (0 when finished already), what it does."""

    name: str
    seconds: float
    work: str


def seconds_per_step(net: torch.nn.Module, size: int, batch: int, train: bool = True, steps: int = 2) -> float:
    """Wall time of one step of ``net`` on a random ``batch x 3 x size x size`` batch, in the memory layout training
    uses (``distill.preprocess.channels_last``): forward, loss and backward when ``train``, else a forward pass without
    gradients; the mean of ``steps`` after one warm-up."""
    from distill.preprocess import channels_last

    net = channels_last(net)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    net.train(train)

    def step() -> None:
        if train:
            net.zero_grad(set_to_none=True)
            net(x).logsumexp(1).mean().backward()
        else:
            with torch.no_grad():
                net(x)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def seconds_per_forward(net: torch.nn.Module, size: int, backend: str, batch: int = 32) -> float:
    """Seconds per image of the teacher's forward pass in the fill's ``backend`` (``teacher_cache.backend``; ``auto``:
    ONNX Runtime on a CPU, as the fill resolves it): for ONNX Runtime the network is exported first, as the fill does."""
    import tempfile

    if backend == "auto":
        backend = "onnxruntime" if not torch.cuda.is_available() else "torch"
    if backend != "onnxruntime":
        return seconds_per_step(net, size, batch, train=False) / batch
    from distill.runtime import OnnxForward, onnx_session, to_onnx

    x = torch.randn(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        forward = OnnxForward(onnx_session(to_onnx(net.eval(), Path(folder) / "probe.onnx", x[:2])))
        forward(x)
        start = time.perf_counter()
        forward(x)
        return (time.perf_counter() - start) / batch


def epochs_done(stage: Path) -> int:
    """Epochs an interrupted stage finished (its ``checkpoints/last.ckpt``, which the stage resumes from), else 0."""
    last = stage / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return 0
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True, mmap=True).get("epoch", -1)) + 1
    except Exception:  # a damaged file: the stage starts afresh
        return 0


def labelled_images(root: str | Path, data: Any) -> int:
    """Training images of a stage: ``train/`` (with ``val/`` when the stage merges them) less the held-out fraction,
    less the val fraction drawn from a merged pool."""
    from distill.layout import read_layout

    _, train, val = read_layout(root)
    kept = 1 - (data.holdout_fraction or 0.0)
    if data.val_mode == "merge" or not val:
        return int(len(train + val) * kept * (1 - data.val_fraction))
    return int(len(train) * kept)


def batches(images: int, config: Any) -> int:
    """Training batches of one epoch (``trainer.limit_train_batches`` applied, as Lightning does)."""
    count = math.ceil(images / config.data.batch_size)
    limit = config.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(count, limit)
    return int(count * limit) if isinstance(limit, float) else count


def fit_estimate(name: str, config: Any, images: int, net: torch.nn.Module, size: int, done: int = 0) -> StageEstimate:
    """A ``fit`` stage: the epochs left (``done`` finished before an interruption) x batches x one probed step."""
    epochs, per_epoch = max((config.trainer.max_epochs or 1) - done, 0), batches(images, config)
    step = seconds_per_step(net, size, config.data.batch_size)
    return StageEstimate(name, epochs * per_epoch * step,
                         f"{epochs} epoch(s) x {per_epoch} batch(es) of {config.data.batch_size} at {size} px")


def build(definition: Any, num_classes: int, init_args: Any) -> tuple[torch.nn.Module, int]:
    """The network a config trains, with random weights (the probe times arithmetic, not what was learnt)."""
    from distill.models import create_model

    net = create_model(definition, num_classes, input_size=init_args.get("input_size"), width=init_args.get("width"))
    return net, net.preprocess.input_size


def estimate_run(root: str | Path, teacher_configs: list[Any], student_configs: dict[str, Any],
                 finished: set[str], out: Path | None = None, final: Any = None) -> list[StageEstimate]:
    """The stages of a run in order: teacher fine-tune(s), the cache fill, then each student stage of
    ``student_configs`` (stage name -> parsed config), then with ``final`` (the submitted student's config on every
    image) its cache fill and training; a stage named in ``finished`` costs nothing, one interrupted in ``out`` only
    its epochs left."""
    from distill.layout import read_layout

    classes = len(read_layout(root)[0])
    plan: list[StageEstimate] = []
    probed: dict[str, float] = {}
    for i, config in enumerate(teacher_configs):
        name = "teacher" if i == 0 else f"teacher_{i + 1}"
        if name in finished:
            plan.append(StageEstimate(name, 0.0, "finished"))
            continue
        net, size = build(config.model.init_args.net, classes, config.model.init_args)
        done = epochs_done(out / name) if out is not None else 0
        plan.append(fit_estimate(name, config, labelled_images(root, config.data), net, size, done))
    first = next(iter(student_configs.values()), None)
    teacher = first.model.init_args.get("teacher") if first is not None else None
    cache = first.teacher_cache if first is not None else None
    fills = {"teacher_cache": first} | ({"teacher_cache_final": final} if final is not None else {})
    per_image = None
    for name, config in fills.items() if teacher is not None and cache.enabled else ():
        if name in finished:
            plan.append(StageEstimate(name, 0.0, "finished"))
            continue
        images = labelled_images(root, config.data)
        net, size = build(teacher.name, classes, {"input_size": teacher.input_size})
        per_image = per_image or seconds_per_forward(net, size, cache.backend)
        plan.append(StageEstimate(name, images * cache.views * per_image,
                                  f"{images} images x {cache.views} views, the teacher's forward at {size} px"))
    stages = dict(student_configs)
    if final is not None:
        stages["student_final"] = final
    for name, config in stages.items():
        if name in finished:
            plan.append(StageEstimate(name, 0.0, "finished"))
            continue
        init = config.model.init_args
        key = repr((init.student, init.get("input_size"), init.get("width"), config.data.batch_size))
        if key not in probed:
            net, size = build(init.student, classes, init)
            probed[key] = seconds_per_step(net, size, config.data.batch_size)
        done = epochs_done(out / name) if out is not None else 0
        epochs = max((config.trainer.max_epochs or 1) - done, 0)
        per_epoch = batches(labelled_images(root, config.data), config)
        plan.append(StageEstimate(name, epochs * per_epoch * probed[key],
                                  f"{epochs} epoch(s) x {per_epoch} batch(es) of {config.data.batch_size}"))
    return plan


class RunProgress:
    """Says the plan before the first stage, and after each stage how far the run is."""

    def __init__(self, plan: list[StageEstimate]):
        self.plan, self.start, self.done_names = plan, time.time(), set()
        self.estimated_done = 0.0
        todo = [s for s in plan if s.seconds > 0]
        parts = ", ".join(f"{s.name} {duration(s.seconds)}" for s in todo)
        say(f"[estimate] this run: {len(todo)} stage(s) to run ({len(plan) - len(todo)} finished), about "
            f"{duration(sum(s.seconds for s in todo))} of arithmetic on this machine (data loading not probed)"
            + (f": {parts}" if parts else ""))

    def finished(self, name: str, result: Any = None) -> Any:
        """Record that stage ``name`` is done (a stage not in the plan is ignored); say the time elapsed and left.
        Returns ``result``."""
        stage = next((s for s in self.plan if s.name == name), None)
        if stage is None or stage.name in self.done_names:
            return result
        self.done_names.add(stage.name)
        self.estimated_done += stage.seconds
        elapsed = time.time() - self.start
        rest = sum(s.seconds for s in self.plan if s.name not in self.done_names)
        scale = elapsed / self.estimated_done if self.estimated_done > 0 else 1.0
        say(f"[progress] {name} done: {len(self.done_names)} of {len(self.plan)} stage(s), {duration(elapsed)} "
            f"elapsed, about {duration(rest * scale)} left")
        return result
