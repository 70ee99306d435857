"""The arguments of the library's own commands (``distill pipeline | export | prune | report | complexity | search
| demo``), defined with argparse and no torch: ``distill COMMAND --help`` and a mistyped option answer before
torch and Lightning are imported. ``distill.commands`` parses with these, then imports the command's module
and calls its ``run(args)``."""
from __future__ import annotations

import argparse
from pathlib import Path

from distill.recipe import parse_setting

MODEL_FILE = "trained model file (model.pt from the pipeline, or a Lightning .ckpt)"


def command_parser(command: str, description: str, model_file: bool = False) -> argparse.ArgumentParser:
    """``distill COMMAND``'s parser (its description keeps its line breaks); ``model_file``: its first
    positional argument is a trained model file."""
    parser = argparse.ArgumentParser(prog=f"distill {command}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if model_file:
        parser.add_argument("model", help=MODEL_FILE)
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = command_parser("export", model_file=True, description=(
        "Fold BN and export a trained student to ONNX (torch.export-based exporter), checked in ONNX Runtime.\n\n"
        "    distill export runs/trashnet/student_kd/seed_0/model.pt --out runs/export --data ../shared/data/trashnet"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", help="data root: check the exports on its validation images")
    parser.add_argument("--atol", type=float, default=1e-4)
    return parser


def prune_parser() -> argparse.ArgumentParser:
    parser = command_parser("prune", model_file=True, description=(
        "Structured pruning of a trained network to a MAC budget with Torch-Pruning (L1-ranked channels, one\n"
        "ratio for every layer, found by bisection); the result is plain Conv2d / BatchNorm2d / Linear layers.\n\n"
        "    distill prune runs/x/student_kd/seed_0/model.pt --macs 920000 --out runs/x/pruned.pt"))
    parser.add_argument("--macs", type=int, required=True, help="MAC budget (fvcore count)")
    parser.add_argument("--out", type=Path, required=True, help="pruned model file to write")
    parser.add_argument("--tolerance", type=float, default=0.02, help="land at most this fraction below --macs")
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = command_parser("report", model_file=True, description=(
        "Report card of a trained student on the validation split: confusion matrix, per-class table, params,\n"
        "MACs (both counters), latency and score, as report_card.json + report_card.md.\n\n"
        "    distill report runs/trashnet/student_kd/seed_0/model.pt --data ../shared/data/trashnet --out runs/card"))
    parser.add_argument("--data", required=True, help="data root (its val/ split is evaluated)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--keep-aspect", action=argparse.BooleanOptionalAction, default=True)
    return parser


def complexity_parser() -> argparse.ArgumentParser:
    parser = command_parser("complexity", description=(
        "Params, MACs (fvcore and the competition's counter) and the rules verdict.\n\n"
        "    distill complexity --all            # every student preset\n"
        "    distill complexity --model tiny --size 80\n"
        "    distill complexity runs/demo/student_kd/seed_0/model.pt   # a trained model, as it is deployed"))
    parser.add_argument("model_file", nargs="?", type=Path, help=MODEL_FILE)
    parser.add_argument("--model", default="tiny", help="a student preset (distill.models.list_models('student')), "
                                                        "a model name, or a trained model file")
    parser.add_argument("--size", type=int, default=None, help="input size in px (default: the model's own)")
    parser.add_argument("--num-classes", type=int, default=9)
    parser.add_argument("--width", type=float, default=None, help="width multiplier for a student preset")
    parser.add_argument("--all", action="store_true", help="table of every student preset")
    return parser


def search_parser() -> argparse.ArgumentParser:
    parser = command_parser("search", description=(
        "Score-driven student search: short KD runs of candidate students from one fine-tuned teacher (its\n"
        "outputs cached once and shared), then the Pareto front of MACs vs macro F1 and the best by score.\n"
        "Writes search.csv, pareto.csv and search.png; an interrupted search resumes.\n\n"
        "    distill search --recipe trashnet --teacher-weights runs/trashnet/teacher/model.pt \\\n"
        "        --out runs/search --data-root ../shared/data/trashnet \\\n"
        "        --students nano micro tiny --sizes 56 64 80 --widths 0.75 1.0 --epochs 15 [--budget 8]"))
    parser.add_argument("--recipe", required=True, help="a shipped recipe name or a recipe folder")
    parser.add_argument("--teacher-weights", required=True, help="fine-tuned teacher (model.pt of the pipeline)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--students", nargs="+", default=["nano", "micro", "tiny"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0])
    parser.add_argument("--budget", type=int, help="train a seeded random sample of this many grid points")
    parser.add_argument("--epochs", type=int, default=15, help="short KD schedule per candidate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.05, help="prefer candidates with F1 >= 0.5 + margin")
    parser.add_argument("--f1-base", type=float, help="score constant (default: the target data's, "
                                                      "distill.competition.F1_BASE)")
    parser.add_argument("--macs-base", type=float, help="score constant (default: distill.competition.MACS_BASE)")
    parser.add_argument("--teacher-cache-dir", help="reuse this teacher-output cache folder (default OUT/teacher_cache)")
    parser.add_argument("--retrain-epochs", type=int, help="retrain the best candidate with this longer schedule")
    return parser


def pipeline_parser() -> argparse.ArgumentParser:
    """``distill pipeline``'s arguments (its description: the pipeline module's own, which imports no torch)."""
    import distill.pipeline

    parser = argparse.ArgumentParser(prog="distill pipeline", description=distill.pipeline.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", metavar="OUT", help="run on the built-in synthetic data set, writing into OUT")
    parser.add_argument("--recipe", help="a shipped recipe name (demo, trashnet, target) or a recipe folder")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--data-root", help="data folder (overrides the recipe's data.root)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="the students' seeds (default 0)")
    parser.add_argument("--teacher-seed", type=int, default=0,
                        help="the seed of the teacher's fine-tune and its cache, whatever --seeds are (default 0)")
    parser.add_argument("--baseline", action="store_true", help="also train the student without a teacher")
    parser.add_argument("--baseline-views", choices=["fresh", "cached"], default="fresh",
                        help="the student without a teacher trains on fresh augmented views (default) or replays "
                             "the teacher cache's views with labels only (no augmentation during training)")
    parser.add_argument("--predict-dir", type=Path, help="images to predict (default DATA/test/NoLabel)")
    parser.add_argument("--layout", choices=["csv", "competition"], default="csv")
    parser.add_argument("--final", action=argparse.BooleanOptionalAction, default=True,
                        help="after the verdict, train the submitted student (the seed val chose) once more with the "
                             "held-out images too and submit it (default); --no-final submits the verdict's model")
    parser.add_argument("--teacher-only", action="store_true",
                        help="stop after fine-tuning the teacher (its figures: OUT/teacher_summary.json)")
    parser.add_argument("--results-json", type=Path, help="also write the summary here")
    parser.add_argument("--set", dest="settings", action="append", default=[], type=parse_setting, metavar="KEY=VALUE",
                        help="override for the student stages, e.g. --set trainer.max_epochs=30, or for the teacher's "
                             "with a teacher. prefix: --set teacher.trainer.max_epochs=2 (repeatable)")
    return parser


def demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill demo", description="Write the built-in synthetic demo data set.")
    parser.add_argument("root")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--test-images", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    return parser


# command -> its parser; the command's module (distill.commands.COMMANDS) has run(args)
PARSERS = {"pipeline": pipeline_parser, "export": export_parser, "prune": prune_parser, "report": report_parser,
           "complexity": complexity_parser, "search": search_parser, "demo": demo_parser}
