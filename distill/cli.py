"""The Lightning CLI of the library: ``distill fit | validate | test | predict`` over the modules of
``distill.module`` (``model.class_path``) and ``WasteDataModule``, with named callbacks as config groups:
``checkpoint`` (best by val/f1), ``last_checkpoint``, ``teacher_cache``, ``complexity``, ``submission``.

    distill fit --config recipes/base/student.yaml --config recipes/trashnet/student.yaml
    distill predict --config runs/x/lightning_logs/version_0/config.yaml --ckpt_path runs/x/checkpoints/best.ckpt
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from torch.cuda import is_available as cuda_available  # noqa: E402

from distill.cache import TeacherCache  # noqa: E402
from distill.callbacks import StageClock, StopOnSignal, StudentComplexity, TimeEstimate  # noqa: E402
from distill.console import quiet_third_party, say_once  # noqa: E402
from distill.data import WasteDataModule  # noqa: E402
from distill.module import MIXUP_WITH_CACHE, TrainingModule  # noqa: E402
from distill.precision import choose  # noqa: E402
from distill.submission import SubmissionWriter  # noqa: E402


class DistillCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--precision", default="auto", type=Literal["auto", "32", 32, "bf16"],
                            help="training precision when trainer.precision is not set: auto = bf16-mixed where "
                                 "this machine runs bf16 fast (see distill.precision), else 32-true")
        parser.set_defaults({"model": {"class_path": "distill.module.DistillModule"}})
        for key in ("num_classes", "class_counts", "class_names"):
            parser.link_arguments(f"data.{key}", f"model.init_args.{key}", apply_on="instantiate")
        parser.link_arguments("data.base_size", "model.init_args.base_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/f1", "checkpoint.mode": "max", "checkpoint.save_last": False,
                             "checkpoint.filename": "best", "checkpoint.auto_insert_metric_name": False})
        # last.ckpt after every epoch, improved or not (Lightning's save_last only follows a new best)
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.monitor": None,
                             "last_checkpoint.save_top_k": 1, "last_checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(StopOnSignal, "stop_on_signal")  # SIGTERM: the resume line
        parser.add_lightning_class_args(StageClock, "stage_clock")  # the fit's seconds, across resumes
        parser.add_lightning_class_args(TeacherCache, "teacher_cache")
        # the cache's teacher and view size come from the model (a fine-tune's model has no teacher: nothing cached)
        parser.link_arguments("model", "teacher_cache.teacher", compute_fn=teacher_of, apply_on="instantiate")
        parser.link_arguments("model", "teacher_cache.student_size", compute_fn=input_size_of, apply_on="instantiate")
        parser.add_lightning_class_args(StudentComplexity, "complexity")
        parser.add_lightning_class_args(TimeEstimate, "time_estimate")
        parser.add_lightning_class_args(SubmissionWriter, "submission")
        parser.link_arguments("complexity.f1_base", "submission.f1_base")
        parser.link_arguments("complexity.macs_base", "submission.macs_base")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_compatible(config)
        if config.trainer.get("precision") is None:
            accelerator = str(config.trainer.get("accelerator") or "auto")
            device = "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda_available()) else "cpu"
            choice = choose(device)
            config.trainer.precision = {"auto": choice.trainer, "32": "32-true", "bf16": "bf16-mixed"}[str(config.precision)]
            if config.precision == "auto":
                say_once(f"precision auto: {config.trainer.precision} ({choice.reason})")


def teacher_of(model: TrainingModule) -> Any:
    """What ``model`` distils from (its ``teacher_source``); None for a model trained on labels alone."""
    return getattr(model, "teacher_source", None)


def input_size_of(model: TrainingModule) -> int:
    """The input size of ``model``'s trained network."""
    return model.net.preprocess.input_size


def check_compatible(config: Any) -> None:
    """Options that each parse but do not go together, or name no registered network, fail here, before anything is
    built (``fit`` and the pipeline's check of every stage alike)."""
    init = config.get("model", {}).get("init_args") or {}
    cache = config.get("teacher_cache") or {}
    if (init.get("mixup") or 0) > 0 and init.get("teacher") is not None and cache.get("enabled", True):
        raise ValueError(MIXUP_WITH_CACHE)
    check_network_names(init)


class ConfigCheck(DistillCLI):
    """Parses and type-checks a config like ``DistillCLI`` and builds nothing (no data, model or trainer)."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_compatible(config)

    def instantiate_classes(self) -> None:
        pass


def check_config(args: dict[str, Any], config_files: list[str | Path] = ()) -> Any:
    """Raise ``ValueError`` naming the option when ``args`` on top of ``config_files`` is not a valid ``fit``
    config (unknown key, wrong type, bad choice): the pipeline checks every stage before the first one runs.
    Returns the parsed config (a jsonargparse namespace)."""
    from jsonargparse import ArgumentError

    parser_kwargs: dict[str, Any] = {"exit_on_error": False}
    if config_files:
        parser_kwargs["default_config_files"] = [str(p) for p in config_files]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
            return ConfigCheck(TrainingModule, WasteDataModule, subclass_mode_model=True, seed_everything_default=0,
                               args=args, run=False, parser_kwargs=parser_kwargs).config
    except ArgumentError as err:
        raise ValueError(f"invalid config ({', '.join(str(p) for p in config_files)} + overrides): {err}") from None


def check_network_names(init_args: Any) -> None:
    """The network a config trains (``net`` / ``student``) is a registered model or a valid spec, resolved with the
    module's ``input_size`` / ``width`` / ``detail_size`` as the module resolves it: an unknown name or a bad spec
    value fails here, as the one cause, before any stage runs (not when the module is built, after a teacher's
    fine-tune). ``teacher.name`` is checked when its ``TeacherSpec`` is parsed."""
    from distill.models import model_definition

    overrides = {key: init_args.get(key) for key in ("input_size", "width", "detail_size")}
    options = {"model.init_args.net": init_args.get("net"), "model.init_args.student": init_args.get("student")}
    for option, value in options.items():
        if isinstance(value, (str, dict)):
            try:
                model_definition(value, **overrides)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{option}: {err}") from None


def build_cli(args: list[str] | dict[str, Any] | None = None, run: bool = True,
              config_files: list[str | Path] = ()) -> DistillCLI:
    """The CLI on ``args`` (a command line as a list, or with ``run=False`` a config dict) instead of
    ``sys.argv``; ``config_files`` are composed in order beneath it (a recipe's base, then its override)."""
    quiet_third_party()
    parser_kwargs: dict[str, Any] = {"default_config_files": [str(p) for p in config_files]} if config_files else {}
    if run and parser_kwargs:
        parser_kwargs = {sub: parser_kwargs for sub in ("fit", "validate", "test", "predict")}
    with warnings.catch_warnings():  # called from Python: the caller's own sys.argv is not ours to parse
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
        return DistillCLI(TrainingModule, WasteDataModule, subclass_mode_model=True, seed_everything_default=0, args=args,
                          run=run, parser_kwargs=parser_kwargs,
                          trainer_defaults={"deterministic": "warn", "log_every_n_steps": 10},
                          save_config_kwargs={"overwrite": True})
