import copy
import json
import shutil
from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch
from distill.models import create_model

from distill.cache import (
    CachedViews,
    MixSpec,
    TeacherCache,
    ViewCache,
    cache_key,
    draw_views,
    fill_share,
    render_view,
)
from distill.data import WasteDataModule
from distill.losses import Focal, kd_loss
from distill.module import DistillModule
from distill.preprocess import model_input, resize_uint8
from distill.teacher import FrozenTeacher


def make_teacher(seed=0, precision="32"):
    torch.manual_seed(seed)
    return FrozenTeacher(create_model("micro", 9, input_size=40), precision)


def train_set(root, augment="strong"):
    dm = WasteDataModule(str(root), image_size=48, augment=augment, batch_size=8)
    dm.setup("fit")
    return dm, dm.train_set


def filled(teacher, ds, tmp_path, views=2, mix=MixSpec(), size=24, **fill):
    cache = ViewCache(teacher, ds, tmp_path, views, num_classes=9, student_size=size, mix=mix)
    cache.create()
    fill_share(cache, **fill)
    return cache


def test_replayed_views_are_pixel_identical(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    a, b = ds.view(3, seed=1234), ds.view(3, seed=1234)
    assert torch.equal(a, b)
    assert not torch.equal(a, ds.view(3, seed=99))  # another seed is another view
    cache = ViewCache(make_teacher(), ds, tmp_path, 3, num_classes=9, student_size=24, render=False)
    cache.create()
    fill_share(cache)
    replay = cache.dataset()
    record = replay.record
    torch.manual_seed(0)
    item = replay[5]
    k = next(k for k in range(3) if torch.equal(torch.from_numpy(replay.logits[5, k]), item["teacher_logits"]))
    assert torch.equal(item["image"], ds.view(5, int(record.seeds[5, k])))
    assert item["label"] == ds.samples[5].label and item["index"] == 5 and "mix_weight" not in item


def test_cached_and_online_kd_losses_are_identical(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    cache = filled(teacher, ds, tmp_path, views=2, batch_size=5)
    record, logits = cache.record(), np.load(cache.logits_file)
    student = create_model("nano", 9, input_size=32).eval()
    idx = [(0, 0), (4, 1), (9, 0), (11, 1)]
    images = torch.stack([render_view(ds, record, i, k) for i, k in idx])
    with torch.no_grad():
        online = teacher(images)
        s = student(model_input(images, student.preprocess))
    cached = torch.stack([torch.from_numpy(logits[i, k]) for i, k in idx])
    assert torch.allclose(online, cached, atol=1e-5)
    assert torch.allclose(kd_loss(s, online, 4.0), kd_loss(s, cached, 4.0), atol=1e-6)


def test_cache_key_follows_teacher_images_views_mixing_and_precision(fresh_demo):
    _, ds = train_set(fresh_demo)
    teacher = make_teacher(0)
    key = cache_key(teacher, ds, 2, 0, MixSpec())
    assert cache_key(teacher, ds, 2, 0, MixSpec()) == key  # same everything: same file
    assert cache_key(teacher, ds, 3, 0, MixSpec()) != key
    assert cache_key(teacher, ds, 2, 1, MixSpec()) != key
    assert cache_key(teacher, ds, 2, 0, MixSpec("mixup")) != key
    assert cache_key(make_teacher(0, "bf16"), ds, 2, 0, MixSpec()) != key
    with torch.no_grad():
        teacher.model.classifier[3].bias.add_(0.1)
    assert cache_key(teacher, ds, 2, 0, MixSpec()) != key  # new weights
    next((fresh_demo / "train" / "Glass").glob("*.jpg")).unlink()
    _, ds_less = train_set(fresh_demo)
    assert cache_key(make_teacher(0), ds_less, 2, 0, MixSpec()) != key  # new image list


def test_changing_a_presets_definition_refills_the_cache(fresh_demo, tmp_path, monkeypatch):
    """The key holds what the augmentation does, not its name: a redefined ``strong`` gets a new cache."""
    import albumentations as A

    import distill.images

    _, ds = train_set(fresh_demo)
    teacher = make_teacher(0)
    old = filled(teacher, ds, tmp_path)
    assert old.complete()
    monkeypatch.setattr(distill.images, "augmentation", lambda name: A.Compose([A.HorizontalFlip(p=1.0)]))
    _, redefined = train_set(fresh_demo)
    assert redefined.augment_name == ds.augment_name == "strong"
    new = ViewCache(teacher, redefined, tmp_path, 2, num_classes=9, student_size=24)
    assert new.stem != old.stem and not new.complete()  # not served the old views and logits
    new.create()
    fill_share(new)
    mirrored = torch.from_numpy(redefined.base_image(0)[:, ::-1].copy()).permute(2, 0, 1)
    assert torch.equal(redefined.view(0, int(new.record().seeds[0, 0])), mirrored)  # the new definition's view


def test_mixup_and_cutmix_views_by_hand(demo_root):
    _, ds = train_set(demo_root)
    n = len(ds)
    mixup = draw_views(n, 4, ds.size, seed=1, mix=MixSpec("mixup", alpha=1.0))
    assert (mixup.partners >= 0).all() and (mixup.partners != torch.arange(n)[:, None]).all()
    assert (mixup.boxes == 0).all() and ((mixup.weights > 0) & (mixup.weights < 1)).all()
    i, k = 3, 2
    own, other = ds.view(i, int(mixup.seeds[i, k])), ds.view(int(mixup.partners[i, k]), int(mixup.partner_seeds[i, k]))
    w = float(mixup.weights[i, k])
    assert torch.equal(render_view(ds, mixup, i, k), (w * own.float() + (1 - w) * other.float()).round().byte())

    cutmix = draw_views(n, 4, ds.size, seed=2, mix=MixSpec("cutmix", alpha=1.0))
    i, k = next((i, k) for i in range(n) for k in range(4)
                if 0 < cutmix.boxes[i, k, 2] - cutmix.boxes[i, k, 0] < ds.size)
    x0, y0, x1, y1 = (int(v) for v in cutmix.boxes[i, k])
    assert float(cutmix.weights[i, k]) == pytest.approx(1 - (x1 - x0) * (y1 - y0) / ds.size**2, abs=1e-6)
    view = render_view(ds, cutmix, i, k)
    own, other = ds.view(i, int(cutmix.seeds[i, k])), ds.view(int(cutmix.partners[i, k]), int(cutmix.partner_seeds[i, k]))
    inside = torch.zeros(ds.size, ds.size, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(view[:, inside], other[:, inside]) and torch.equal(view[:, ~inside], own[:, ~inside])

    half = draw_views(n, 200, ds.size, seed=3, mix=MixSpec("both", prob=0.5))
    share = (half.partners >= 0).float().mean().item()
    assert 0.4 < share < 0.6  # mix_prob of the views are mixed
    cut_share = (half.boxes.sum(-1) > 0)[half.partners >= 0].float().mean().item()
    assert 0.35 < cut_share < 0.65  # "both": mixup and CutMix about equally often
    assert torch.equal(draw_views(n, 4, ds.size, 1, MixSpec("mixup")).weights, mixup.weights)  # seeded


def test_teacher_sees_the_mixed_view_and_the_batch_carries_both_labels(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    cache = filled(teacher, ds, tmp_path, views=2, mix=MixSpec("both"), size=24)
    replay = cache.dataset()
    record = replay.record
    for i, k in [(0, 0), (6, 1)]:
        view = render_view(ds, record, i, k)
        assert torch.allclose(teacher(view[None])[0], torch.from_numpy(replay.logits[i, k]), atol=1e-5)
        assert torch.equal(torch.from_numpy(replay.rendered[i, k]).permute(2, 0, 1), resize_uint8(view[None], 24)[0])
    item = replay[4]
    assert set(item) == {"image", "label", "index", "teacher_logits", "partner_label", "mix_weight"}
    partners = {int(record.partners[4, k]) for k in range(2)}
    assert item["partner_label"] in {ds.samples[p].label for p in partners}


def test_mixed_label_loss_by_hand():
    module = DistillModule(3, student="nano", input_size=32, label_loss=Focal(gamma=0.0, alpha="none"))
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels, partners, w = torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([0.7, 0.4])
    log_p = logits.log_softmax(1)
    by_hand = -(w * log_p[[0, 1], labels] + (1 - w) * log_p[[0, 1], partners]).mean()
    assert module.combine(logits, labels, None, partners, w)["loss"].item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_fill_with_loader_workers_gives_the_same_outputs(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    serial = filled(teacher, ds, tmp_path / "a", views=2, batch_size=7)
    parallel = filled(teacher, ds, tmp_path / "b", views=2, batch_size=7, num_workers=2)
    assert np.allclose(np.load(serial.logits_file), np.load(parallel.logits_file), atol=1e-6)
    assert np.array_equal(np.load(serial.views_file), np.load(parallel.views_file))


def test_stopped_fill_resumes_without_redoing_work(demo_root, tmp_path, monkeypatch):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    whole = filled(teacher, ds, tmp_path / "whole", views=3, batch_size=8)
    import distill.cache.fill as tc

    cache = ViewCache(teacher, ds, tmp_path / "stopped", 3, num_classes=9, student_size=24)
    cache.create()
    calls = []
    real_fill = tc.fill

    def stop_after_two_batches(dataset, record, arrays, progress, step, desc, batch_size=64, num_workers=0,
                               save_every=4096, position=0, report=None):
        def counting(images, rows):
            calls.append(len(images))
            if len(calls) > 2:
                raise KeyboardInterrupt
            return step(images, rows)
        return real_fill(dataset, record, arrays, progress, counting, desc, batch_size, num_workers, save_every=1)

    monkeypatch.setattr(tc, "fill", stop_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        fill_share(cache, batch_size=8)
    assert not cache.complete()
    monkeypatch.setattr(tc, "fill", real_fill)
    seen = []
    teacher_call = teacher.__class__.__call__
    monkeypatch.setattr(teacher.__class__, "__call__", lambda self, x: seen.append(len(x)) or teacher_call(self, x))
    fill_share(cache, batch_size=8)
    assert cache.complete() and sum(seen) == len(ds) * 3 - 16  # the two finished batches were not redone
    assert np.allclose(np.load(cache.logits_file), np.load(whole.logits_file), atol=1e-6)
    assert np.array_equal(np.load(cache.views_file), np.load(whole.views_file))


def test_shares_of_several_processes_make_one_cache(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    whole = filled(teacher, ds, tmp_path / "one", views=2)
    cache = ViewCache(teacher, ds, tmp_path / "two", 2, num_classes=9, student_size=24)
    cache.create()
    fill_share(cache, rank=1, world_size=2)
    assert not cache.complete()
    fill_share(cache, rank=0, world_size=2)
    assert cache.complete()
    assert np.allclose(np.load(cache.logits_file), np.load(whole.logits_file), atol=1e-6)


def test_fit_with_cache_reads_logits_from_batches(demo_root, tmp_path):
    L.seed_everything(0)
    dm = WasteDataModule(str(demo_root), image_size=48, batch_size=16, augment="light")
    module = DistillModule(9, student="nano", input_size=32, teacher=make_teacher().model, distill_weight=1.0)
    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((batch["teacher_logits"].shape, batch["mix_weight"].shape))

    cache = TeacherCache(views=2, mix="cutmix", cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_epochs=1, callbacks=[cache, Spy()], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, dm)
    assert cache.cache.complete() and module.teacher is None  # trained from the cache alone
    assert isinstance(dm.train_set, CachedViews) and seen and all(s[0][1] == 9 for s in seen)
    assert "val/f1" in trainer.callback_metrics
    with pytest.raises(ValueError, match="mix_prob"):
        TeacherCache(mix="mixup", mix_prob=2)
    with pytest.raises(ValueError, match="teacher_cache.mix='blend'"):
        TeacherCache(mix="blend")


def test_bf16_teacher_outputs_have_their_own_cache(fresh_demo, tmp_path):
    _, ds = train_set(fresh_demo)
    teacher, teacher16 = make_teacher(), make_teacher(precision="bf16")
    fp32, bf16 = filled(teacher, ds, tmp_path, views=2), filled(teacher16, ds, tmp_path, views=2)
    assert fp32.logits_file != bf16.logits_file  # never a reuse of outputs computed in another precision
    a, b = np.load(fp32.logits_file), np.load(bf16.logits_file)
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    assert np.abs(b - a).max() < 0.05 * np.abs(a).max()  # bfloat16 rounding, not another model
    record = bf16.record()
    assert torch.equal(record.seeds, fp32.record().seeds)  # the same recorded views
    images = torch.stack([render_view(ds, record, i, 1) for i in (0, 3)])
    assert torch.allclose(teacher16(images), torch.from_numpy(b[[0, 3], 1]), atol=1e-5)  # = an online bf16 teacher


def test_onnxruntime_fill_matches_eager_float32(demo_root, tmp_path):
    pytest.importorskip("onnxruntime")
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    eager = filled(teacher, ds, tmp_path / "torch", views=2)
    onnx = ViewCache(teacher, ds, tmp_path / "ort", 2, num_classes=9, student_size=24, backend="onnxruntime")
    onnx.create()
    fill_share(onnx, batch_size=16)
    assert onnx.stem.name != eager.stem.name  # its own cache key
    assert np.allclose(np.load(onnx.logits_file), np.load(eager.logits_file), atol=1e-4)
    assert np.array_equal(np.load(onnx.views_file), np.load(eager.views_file))
    with pytest.raises(ValueError, match="backend"):
        TeacherCache(backend="tensorrt")
    with pytest.raises(ValueError, match="teacher_cache.processes must be an integer >= 1 or 'auto', got 0"):
        TeacherCache(processes=0)


def test_flip_averaged_teacher_fills_the_mean_of_each_view_and_its_mirror(demo_root, tmp_path):
    pytest.importorskip("onnxruntime")
    _, ds = train_set(demo_root)
    plain = make_teacher()
    head = [m for m in plain.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(head.weight, std=10.0)  # logits of a usable size (a fresh micro head's are ~1e-5)
    flipped = FrozenTeacher(plain.model, "32", flip_average=True)
    assert cache_key(flipped, ds, 2, 0, MixSpec()) != cache_key(plain, ds, 2, 0, MixSpec())
    eager = filled(flipped, ds, tmp_path / "torch", views=2)
    record, logits = eager.record(), np.load(eager.logits_file)
    idx = [(0, 0), (4, 1), (9, 0)]
    images = torch.stack([render_view(ds, record, i, k) for i, k in idx])
    with torch.no_grad():
        by_hand = (plain(images) + plain(images.flip(-1))) / 2
    cached = torch.stack([torch.from_numpy(logits[i, k]) for i, k in idx])
    assert torch.allclose(cached, by_hand, atol=1e-5)
    assert (cached - plain(images)).abs().max() > 100 * 1e-5  # the mirror moved the targets far past that tolerance
    onnx = ViewCache(flipped, ds, tmp_path / "ort", 2, num_classes=9, student_size=24, backend="onnxruntime")
    onnx.create()
    fill_share(onnx, batch_size=16)
    assert np.allclose(np.load(onnx.logits_file), logits, atol=1e-4)


def test_teacher_spec_flip_average_reaches_the_online_teacher(tmp_path):
    from distill.teacher import TeacherSpec

    torch.manual_seed(0)
    weights = tmp_path / "t.pt"
    torch.save(create_model("resnet18", 3, input_size=32).state_dict(), weights)
    module = DistillModule(num_classes=3, student="nano", input_size=24,
                           teacher=TeacherSpec("resnet18", str(weights), 32, "32", flip_average=True))
    teacher = module.build_teacher()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert teacher.flip_average
    assert torch.allclose(teacher(images), (teacher.forward(images) + teacher.forward(images.flip(-1))) / 2)


def cache_args(demo_root, teacher_file, cache_dir, *extra):
    return ["--data.root", str(demo_root), "--data.image_size", "40", "--data.batch_size", "8",
            "--model.student", "nano", "--model.input_size", "24", "--model.teacher.name", "resnet18",
            "--model.teacher.weights", str(teacher_file), "--model.teacher.input_size", "32",
            "--teacher_cache.views", "2", "--teacher_cache.cache_dir", str(cache_dir), "--teacher_cache.backend",
            "torch", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", *extra]


def test_distill_cache_fills_what_a_fit_then_reads(demo_root, tmp_path, capsys):
    """The cache is a stage of its own: ``distill cache`` fills it from a teacher file, the fit with the same
    options finds it complete (no fill, no teacher built for training) and trains from it."""
    from distill.models import create_model

    from distill.cache_stage import fill_cache, main
    from distill.cli import build_cli

    teacher = tmp_path / "teacher.pt"
    torch.save(create_model("resnet18", 9).state_dict(), teacher)
    args = cache_args(demo_root, teacher, tmp_path / "cache")
    main(args)
    record = json.loads((tmp_path / "cache" / "stage.json").read_text())
    assert record["views"] == 2 and record["fill_seconds"] > 0 and record["images"] > 0
    cli = build_cli(["fit", *args, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "fit")])
    callback = cli.config_init["fit"]["teacher_cache"]
    assert callback.fill_seconds == 0 and str(callback.cache.stem) == record["stem"]
    assert isinstance(cli.datamodule.train_set, CachedViews) and cli.model.teacher is None
    # what it cached from: linked by the CLI from the model, not read off the module
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, TeacherCache))
    assert callback.teacher is cli.model.teacher_source and callback.student_size == 24
    # the teacher's macro F1 on its cached views, against each view's label as the fit reads them
    from distill.evaluation import macro_f1, offclass_entropy

    views = cli.datamodule.train_set
    labels = [int(views.labels[i]) for i in range(len(views)) for _ in range(2)]
    preds = [int(np.argmax(views.logits[i, k])) for i in range(len(views)) for k in range(2)]
    assert record["teacher_view_f1"] == pytest.approx(macro_f1(np.array(labels), np.array(preds), 9))
    assert record["teacher_offclass_entropy"] == pytest.approx(offclass_entropy(np.asarray(views.logits)))
    again = fill_cache(args)  # reused: the recorded fill time is kept
    assert again.fill_seconds == record["fill_seconds"] and again.stem == record["stem"]
    moved = tmp_path / "moved"  # a run folder moved (or its cache linked into another run): the same fill time
    shutil.copytree(tmp_path / "cache", moved)
    assert fill_cache(cache_args(demo_root, teacher, moved)).fill_seconds == record["fill_seconds"]
    # only the student-size views missing: they are rendered again, and the time reported is that, not the
    # teacher's fill recorded with the logits
    logits_seconds = json.loads(next((tmp_path / "cache").glob("*.logits.progress0.json")).read_text())["seconds"]
    logits_seconds += 1000.0
    for progress in (tmp_path / "cache").glob("*.logits.progress*.json"):
        progress.write_text(json.dumps({**json.loads(progress.read_text()), "seconds": logits_seconds}))
    for path in (tmp_path / "cache").glob("*px*"):
        path.unlink()
    rendered = fill_cache(args)
    assert 0 < rendered.fill_seconds < 1000 and rendered.stem == record["stem"]
    with pytest.raises(ValueError, match="nothing to cache"):
        main([*args, "--teacher_cache.enabled", "false"])


def test_mixup_with_the_cache_fails_when_the_config_is_parsed(demo_root, tmp_path):
    from distill.cli import build_cli, check_config

    args = cache_args(demo_root, tmp_path / "no_teacher_needed.pt", tmp_path / "cache", "--model.mixup", "0.4")
    with pytest.raises(ValueError, match="model.mixup mixes images the cached teacher never saw"):
        build_cli(["fit", *args])
    with pytest.raises(ValueError, match="model.mixup mixes images"):
        check_config({"data": {"root": str(demo_root)}, "model": {"init_args": {"mixup": 0.4, "teacher": {"name": "resnet18"}}}}, [])
    assert not (tmp_path / "cache").exists()  # nothing built, nothing filled
    # without the CLI (the library's own Trainer): the module refuses the first cached batch (the filled cache
    # stays, complete, for a run without mixup)
    module = DistillModule(9, student="nano", input_size=32, teacher=make_teacher().model, mixup=0.4)
    callback = TeacherCache(views=2, cache_dir=str(tmp_path / "api"))
    trainer = L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="model.mixup mixes images the cached teacher never saw"):
        trainer.fit(module, WasteDataModule(str(demo_root), image_size=48, batch_size=16))
    assert callback.cache.complete() and module.global_step == 0


def test_a_teacher_with_detail_size_fills_its_logits_on_the_students_view(demo_root, tmp_path):
    _, ds = train_set(demo_root)
    torch.manual_seed(0)
    net = create_model("resnet18", 9, weights=None, input_size=40)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.normal_(head.weight, std=10.0)
    plain = FrozenTeacher(net, "32")
    detailed = FrozenTeacher(copy.deepcopy(net), "32")
    detailed.model.preprocess = replace(net.preprocess, detail_size=24)
    assert cache_key(detailed, ds, 2, 0, MixSpec()) != cache_key(plain, ds, 2, 0, MixSpec())
    cache = filled(detailed, ds, tmp_path, views=2, size=24)
    record, logits, views = cache.record(), np.load(cache.logits_file), np.load(cache.views_file)
    idx = [(0, 0), (4, 1), (9, 0)]
    student_views = torch.stack([torch.from_numpy(views[i, k]).permute(2, 0, 1) for i, k in idx])
    by_hand = plain(student_views)  # the plain teacher on the student's own 24-px view
    cached = torch.stack([torch.from_numpy(logits[i, k]) for i, k in idx])
    assert torch.allclose(cached, by_hand, atol=1e-4)
    full = plain(torch.stack([render_view(ds, record, i, k) for i, k in idx]))
    assert (cached - full).abs().max() > 1e-2  # the full-detail view would have given other targets


def test_teacher_spec_detail_size_must_match_the_fine_tune(tmp_path):
    from distill.models import model_definition

    from distill.checkpoint import save_trained
    from distill.teacher import TeacherSpec

    torch.manual_seed(0)
    definition = model_definition("resnet18", 32, detail_size=16)
    weights = save_trained(tmp_path / "t.pt", create_model(definition, 3), definition, 3, base_size=48)
    with pytest.raises(ValueError, match=r"detail_size=16 but teacher.detail_size=None"):
        TeacherSpec("resnet18", str(weights), 32, "32").build(3)
    legacy = tmp_path / "legacy.pt"  # torch's old (non-zip) format cannot be memory-mapped: still read, still checked
    torch.save(torch.load(weights, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"legacy.pt was fine-tuned with detail_size=16"):
        TeacherSpec("resnet18", str(legacy), 32, "32").build(3)
    with pytest.raises(ValueError, match=r"teacher.detail_size=4 is too small \(>= 8"):  # the option, named at once
        TeacherSpec("resnet18", str(weights), 32, "32", detail_size=4)
    module = DistillModule(num_classes=3, student="nano", input_size=24,
                           teacher=TeacherSpec("resnet18", str(weights), 32, "32", detail_size=16))
    assert module.build_teacher().preprocess.detail_size == 16
    # the fine-tune itself: Classifier(detail_size=...) trains and evaluates on the shrunk images
    from distill.module import Classifier
    from distill.preprocess import resize_uint8

    fine_tune = Classifier(num_classes=3, net="resnet18", input_size=32, detail_size=16)
    assert fine_tune.model_def["detail_size"] == 16
    images = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    fine_tune.eval()
    with torch.no_grad():
        assert torch.allclose(fine_tune(images), fine_tune(resize_uint8(images, 16)), atol=1e-5)


def test_a_teacher_ensemble_fills_and_teaches_the_mean_of_its_members_logits(demo_root, tmp_path):
    """``teacher.weights`` as a list: one model per file, its logits the mean of theirs, online and in the cache
    (eager and ONNX Runtime), with a cache of its own."""
    from distill.teacher import MeanLogits, TeacherSpec

    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("resnet18", 9, input_size=32)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.normal_(head.weight, std=0.5)  # logits of a usable size (about 5), different per member
        files.append(tmp_path / f"t{seed}.pt")
        torch.save(model.state_dict(), files[-1])
    module = DistillModule(num_classes=9, student="nano", input_size=24,
                           teacher=TeacherSpec("resnet18", [str(f) for f in files], 32, "32"))
    ensemble = module.build_teacher()
    members = [FrozenTeacher(TeacherSpec("resnet18", str(f), 32, "32").build(9)) for f in files]
    assert isinstance(ensemble.model, MeanLogits) and len(ensemble.model.members) == 2
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    one, two = members[0](images), members[1](images)
    assert torch.allclose(ensemble(images), (one + two) / 2, atol=1e-5) and (one - two).abs().max() > 1e-2
    assert TeacherSpec("resnet18", [str(files[0])], 32, "32").build(9).__class__ is not MeanLogits  # one file: itself

    _, ds = train_set(demo_root)
    assert cache_key(ensemble, ds, 2, 0, MixSpec()) != cache_key(members[0], ds, 2, 0, MixSpec())
    eager = filled(ensemble, ds, tmp_path / "torch", views=2)
    record, logits = eager.record(), np.load(eager.logits_file)
    idx = [(0, 0), (4, 1), (9, 0)]
    views = torch.stack([render_view(ds, record, i, k) for i, k in idx])
    cached = torch.stack([torch.from_numpy(logits[i, k]) for i, k in idx])
    assert torch.allclose(cached, (members[0](views) + members[1](views)) / 2, atol=1e-5)
    pytest.importorskip("onnxruntime")
    onnx = ViewCache(ensemble, ds, tmp_path / "ort", 2, num_classes=9, student_size=24, backend="onnxruntime")
    onnx.create()
    fill_share(onnx, batch_size=16)
    assert np.allclose(np.load(onnx.logits_file), logits, atol=1e-4)


def test_a_teacher_ensemble_needs_members_that_share_one_input(tmp_path):
    from distill.teacher import MeanLogits, TeacherSpec

    with pytest.raises(ValueError, match="input_size"):
        MeanLogits([create_model("micro", 9, input_size=40), create_model("micro", 9, input_size=32)])
    with pytest.raises(ValueError, match=r"teacher.weights=\[\]"):
        TeacherSpec("resnet18", [], 32, "32").build(9)


def test_a_batch_fetched_whole_is_the_items_it_names_each_with_one_recorded_view(demo_root, tmp_path):
    """``CachedViews.__getitems__`` (what the DataLoader calls) gathers a batch in one indexing: each image is one of
    its recorded views, with the teacher's logits, partner label and mixing weight of that same view."""
    from torch.utils.data import DataLoader

    from distill.data import collate

    _, ds = train_set(demo_root)
    cache = filled(make_teacher(), ds, tmp_path, views=3, mix=MixSpec("mixup", prob=0.5), size=24)
    replay = cache.dataset()
    record = replay.record
    indices = [4, 0, 7, 4, 11]
    torch.manual_seed(0)
    batch = replay.__getitems__(indices)
    assert batch["image"].shape == (5, 3, 24, 24) and batch["image"].dtype == torch.uint8
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    assert batch["index"].tolist() == indices
    for row, i in enumerate(indices):
        k = next(k for k in range(3) if torch.equal(torch.from_numpy(replay.rendered[i, k]).permute(2, 0, 1),
                                                    batch["image"][row]))
        assert torch.equal(batch["teacher_logits"][row], torch.from_numpy(replay.logits[i, k]))
        partner = int(record.partners[i, k])
        assert batch["label"][row] == ds.samples[i].label
        assert batch["partner_label"][row] == (ds.samples[partner].label if partner >= 0 else ds.samples[i].label)
        assert batch["mix_weight"][row] == pytest.approx(float(record.weights[i, k]))
    # the per-item path gives the same keys and types, so a loader may use either
    items = collate([replay[i] for i in indices])
    assert {k: (v.dtype, v.shape) for k, v in items.items()} == {k: (v.dtype, v.shape) for k, v in batch.items()}
    loader = DataLoader(replay, batch_size=4, shuffle=True, collate_fn=collate)
    assert sum(len(b["label"]) for b in loader) == len(replay)
    assert isinstance(collate(batch), dict) and collate(batch) is batch  # a whole batch passes collate as it is
