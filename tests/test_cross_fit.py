"""Cross-fitted teachers: each fold's fine-tune leaves that fold's training images out, and in the teacher-output
cache every image is labelled by the member that never trained on it."""
import json

import numpy as np
import pytest
import torch
import yaml
from distill.models import create_model

from distill.cache import MixSpec, ViewCache, ViewRecord, cache_key, fill_share, render_view
from distill.checkpoint import save_trained
from distill.data import WasteDataModule
from distill.module import DistillModule
from distill.pipeline import run_pipeline
from distill.recipe import Recipe
from distill.splits import cross_fit_fold
from distill.stages import StageRecord
from distill.teacher import CrossFitted, FrozenTeacher, TeacherSpec


def test_a_fold_fine_tune_trains_on_the_other_folds_only(demo_root):
    whole = WasteDataModule(str(demo_root), image_size=32, holdout_fraction=0.2)
    parts = [WasteDataModule(str(demo_root), image_size=32, holdout_fraction=0.2, cross_fit_fold=k) for k in (0, 1)]
    folds = whole.train_folds(2)
    assert sorted(set(folds)) == [0, 1]  # both folds hold images
    for k, part in enumerate(parts):  # fold k's fine-tune: every training image outside fold k, nothing else
        assert part.train_samples == [s for s, f in zip(whole.train_samples, folds) if f != k]
        assert part.val_samples == whole.val_samples and part.holdout_samples == whole.holdout_samples
    # a file's fold is its path's and the seed's alone: the same under another order or root object
    sample = whole.train_samples[3]
    assert cross_fit_fold(sample, demo_root, 2, 0) == folds[3]
    assert [cross_fit_fold(s, demo_root, 2, 1) for s in whole.train_samples] != folds  # another seed, other folds
    with pytest.raises(ValueError, match=r"data.cross_fit_fold=2: choose 0 .. 1"):
        WasteDataModule(str(demo_root), cross_fit_fold=2)
    with pytest.raises(ValueError, match="data.cross_fit_folds must be >= 2"):
        WasteDataModule(str(demo_root), cross_fit_fold=0, cross_fit_folds=1)


def fold_teachers(tmp_path, folds=2):
    """Two small fine-tuned-looking teachers, each recorded as the fine-tune without its fold."""
    files = []
    for k in range(folds):
        torch.manual_seed(k)
        model = create_model("resnet18", 9, input_size=32)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.normal_(head.weight, std=0.5)  # logits of a usable size, different per member
        files.append(str(save_trained(tmp_path / f"fold{k}.pt", model, "resnet18", 9,
                                      cross_fit={"fold": k, "folds": folds})))
    return files


def test_the_cache_labels_each_image_with_the_member_that_left_it_out(demo_root, tmp_path):
    files = fold_teachers(tmp_path)
    spec = TeacherSpec("resnet18", files, 32, "32", cross_fit=True)
    teacher = FrozenTeacher(spec.build(9))
    assert isinstance(teacher.model, CrossFitted) and teacher.cross_fit
    members = [FrozenTeacher(TeacherSpec("resnet18", f, 32, "32").build(9)) for f in files]
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(teacher(images), (members[0](images) + members[1](images)) / 2, atol=1e-5)  # unseen: mean

    dm = WasteDataModule(str(demo_root), image_size=48, augment="strong")
    dm.setup("fit")
    folds = dm.train_folds(2)
    ds = dm.train_images
    ensemble = FrozenTeacher(TeacherSpec("resnet18", files, 32, "32").build(9))
    assert cache_key(teacher, ds, 2, 0, MixSpec(), folds=folds) != cache_key(ensemble, ds, 2, 0, MixSpec())
    caches = {}
    for backend in ("torch", "onnxruntime"):
        if backend == "onnxruntime":
            pytest.importorskip("onnxruntime")
        cache = ViewCache(teacher, ds, tmp_path / backend, 2, num_classes=9, student_size=24, backend=backend,
                          folds=folds)
        cache.create()
        fill_share(cache, batch_size=3)  # batches that span images of both folds
        caches[backend] = np.load(cache.logits_file)
    record, logits = cache.record(), caches["torch"]
    for i in range(len(ds)):
        view = render_view(ds, record, i, 1)[None]
        own, other = members[folds[i]](view)[0], members[1 - folds[i]](view)[0]
        assert torch.allclose(torch.from_numpy(logits[i, 1]), own, atol=1e-4)
        assert (torch.from_numpy(logits[i, 1]) - other).abs().max() > 1e-3
    assert np.allclose(caches["onnxruntime"], logits, atol=1e-4)


def test_cross_fitted_teachers_are_checked_before_use(demo_root, tmp_path):
    files = fold_teachers(tmp_path)
    with pytest.raises(ValueError, match=r"teacher.weights\[0\]=.*fold1.pt is not the fine-tune without fold 0"):
        TeacherSpec("resnet18", files[::-1], 32, "32", cross_fit=True).build(9)
    with pytest.raises(ValueError, match="one fine-tune per fold"):
        TeacherSpec("resnet18", files[0], 32, "32", cross_fit=True).build(9)
    teacher = FrozenTeacher(TeacherSpec("resnet18", files, 32, "32", cross_fit=True).build(9))
    dm = WasteDataModule(str(demo_root), image_size=48, augment="strong")
    dm.setup("fit")
    with pytest.raises(ValueError, match="give the cache .* folds"):
        ViewCache(teacher, dm.train_images, tmp_path, 2, num_classes=9, student_size=24)
    with pytest.raises(ValueError, match="teacher_cache.mix='mixup' with cross-fitted teachers"):
        ViewCache(teacher, dm.train_images, tmp_path, 2, num_classes=9, student_size=24, mix=MixSpec("mixup"),
                  folds=dm.train_folds(2))
    module = DistillModule(num_classes=9, student="nano", input_size=24,
                           teacher=TeacherSpec("resnet18", files, 32, "32", cross_fit=True))
    with pytest.raises(ValueError, match="teacher.cross_fit: true is for the teacher-output cache"):
        module.teacher_logits(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_pipeline_with_cross_fitted_teachers(demo_root, tmp_path, quick_pipeline):
    """A recipe whose ``teachers`` are the fold fine-tunes and whose students take them as ``cross_fit``: each
    fine-tune records its fold and the cache's targets come from it, checked against the member files by hand."""
    folder = tmp_path / "recipe"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("extends: demo\nteachers: [{data: {cross_fit_fold: 0}}, "
                                        "{data: {cross_fit_fold: 1}}]\n")
    (folder / "student.yaml").write_text("model: {init_args: {teacher: {cross_fit: true}}}\n")
    out = tmp_path / "out"
    summary = run_pipeline(Recipe.find(folder), out, str(demo_root), seeds=[0], baseline=False, predict_dir=None,
                           settings=quick_pipeline)
    files = [StageRecord.load(out / stage / "stage.json").model_file for stage in ("teacher", "teacher_2")]
    assert [torch.load(f, weights_only=True)["cross_fit"] for f in files] == [{"fold": 0, "folds": 2},
                                                                             {"fold": 1, "folds": 2}]
    config = yaml.safe_load(open(StageRecord.load(out / "student_kd/seed_0/stage.json").config))
    assert config["model"]["init_args"]["teacher"]["weights"] == files
    ensemble = json.loads((out / "teacher_ensemble" / "stage.json").read_text())  # scored as the members' mean
    assert summary.teacher_holdout_f1 == ensemble["holdout_f1"]
    # the cache: image i's logits are those of the member without fold(i)
    dm = WasteDataModule(str(demo_root), image_size=config["data"]["image_size"], augment=config["data"]["augment"],
                         holdout_fraction=0.2)
    dm.setup("fit")
    folds = dm.train_folds(2)
    stem = json.loads((out / "teacher_cache" / "stage.json").read_text())["stem"]
    logits = np.load(stem + ".logits.npy")
    views = ViewRecord(**torch.load(stem + ".record.pt", weights_only=True))
    spec = config["model"]["init_args"]["teacher"]
    members = [FrozenTeacher(TeacherSpec(spec["name"], f, spec["input_size"], "32").build(dm.num_classes))
               for f in files]
    for i in (0, 1, len(folds) - 1):
        view = render_view(dm.train_images, views, i, 0)[None]
        assert torch.allclose(torch.from_numpy(logits[i, 0]), members[folds[i]](view)[0], atol=1e-4)
