import lightning as L
import torch

from distill.data import WasteDataModule
from distill.losses import kd_loss
from distill.module import DistillModule, model_view, teacher_forward
from distill.teacher_cache import TeacherCache, compute_teacher_outputs, load_or_compute
from models import build_student


def make_teacher(seed=0):
    torch.manual_seed(seed)
    return build_student("micro", 9, input_size=40).eval()


def train_set(root, augment="strong"):
    dm = WasteDataModule(str(root), image_size=48, augment=augment, batch_size=8)
    dm.setup("fit")
    return dm, dm.train_set


def test_replayed_views_are_pixel_identical(demo_root):
    _, ds = train_set(demo_root)
    a, b = ds.view(3, seed=1234), ds.view(3, seed=1234)
    assert torch.equal(a, b)
    assert not torch.equal(a, ds.view(3, seed=99))  # another seed is another view
    outputs = compute_teacher_outputs(make_teacher(), ds, views=3, seed=0)
    ds.teacher_outputs = outputs
    torch.manual_seed(0)
    image, label, index, logits = ds[5]
    k = next(k for k in range(3) if torch.equal(outputs.logits[5, k], logits))
    assert torch.equal(image, ds.view(5, int(outputs.seeds[5, k])))


def test_cached_and_online_kd_losses_are_identical(demo_root):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    outputs = compute_teacher_outputs(teacher, ds, views=2, seed=7, batch_size=5)
    student = build_student("nano", 9, input_size=32).eval()
    idx = [(0, 0), (4, 1), (9, 0), (11, 1)]
    images = torch.stack([ds.view(i, int(outputs.seeds[i, k])) for i, k in idx])
    with torch.no_grad():
        online = teacher(model_view(images, teacher.preprocess))
        s = student(model_view(images, student.preprocess))
    cached = torch.stack([outputs.view_logits(i, k) for i, k in idx])
    assert torch.allclose(online, cached, atol=1e-5)
    assert torch.allclose(kd_loss(s, online, 4.0), kd_loss(s, cached, 4.0), atol=1e-6)


def test_cache_invalidated_by_teacher_weights_and_image_list(fresh_demo, tmp_path):
    _, ds = train_set(fresh_demo)
    teacher = make_teacher(0)
    _, path, fresh = load_or_compute(teacher, ds, tmp_path, views=2)
    assert fresh and path.exists()
    _, path2, fresh2 = load_or_compute(teacher, ds, tmp_path, views=2)
    assert not fresh2 and path2 == path  # same everything: reused
    with torch.no_grad():
        teacher.classifier[3].bias.add_(0.1)
    _, path3, fresh3 = load_or_compute(teacher, ds, tmp_path, views=2)
    assert fresh3 and path3 != path  # new weights: recomputed
    next((fresh_demo / "train" / "Glass").glob("*.jpg")).unlink()
    _, ds_less = train_set(fresh_demo)
    _, path4, fresh4 = load_or_compute(teacher, ds_less, tmp_path, views=2)
    assert fresh4 and path4 not in (path, path3)  # new image list: recomputed


def test_topk_mode_keeps_top_logits(demo_root):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    full = compute_teacher_outputs(teacher, ds, views=1, seed=0)
    top = compute_teacher_outputs(teacher, ds, views=1, seed=0, topk=3)
    assert top.logits is None and top.topk_values.shape[-1] == 3
    a, b = full.view_logits(2, 0), top.view_logits(2, 0)
    best = a.topk(3).indices
    assert torch.equal(a[best], b[best]) and torch.equal(a.argmax(), b.argmax())


def test_fit_with_cache_reads_logits_from_batches(demo_root, tmp_path):
    L.seed_everything(0)
    dm = WasteDataModule(str(demo_root), image_size=48, batch_size=16, augment="light")
    module = DistillModule(9, student="nano", student_size=32, teacher=make_teacher())
    cache = TeacherCache(views=2, cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_epochs=1, callbacks=[cache], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, dm)
    assert cache.path.exists() and module.teacher is None  # trained from the cache alone
    assert module.best_val_f1 is not None


def test_fill_with_loader_workers_gives_the_same_outputs(demo_root):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    serial = compute_teacher_outputs(teacher, ds, views=2, seed=5, batch_size=7)
    parallel = compute_teacher_outputs(teacher, ds, views=2, seed=5, batch_size=7, num_workers=2)
    assert torch.equal(serial.seeds, parallel.seeds)
    assert torch.allclose(serial.logits, parallel.logits, atol=1e-6)


def test_rendered_views_are_the_replayed_views_at_student_size(demo_root):
    from distill.teacher_cache import render_views, resize_uint8

    _, ds = train_set(demo_root)
    outputs = compute_teacher_outputs(make_teacher(), ds, views=2, seed=3)
    rendered = render_views(ds, outputs.seeds, size=24, batch_size=5, num_workers=2)
    assert rendered.shape == (len(ds), 2, 3, 24, 24) and rendered.dtype == torch.uint8
    for i, k in [(0, 0), (7, 1)]:
        replayed = ds.view(i, int(outputs.seeds[i, k]))
        assert torch.equal(rendered[i, k], resize_uint8(replayed[None], 24)[0])
    ds.teacher_outputs, ds.rendered_views = outputs, rendered
    image, _, index, logits = ds[7]
    k = next(k for k in range(2) if torch.equal(outputs.logits[7, k], logits))
    assert torch.equal(image, rendered[7, k])  # the batch carries the rendered view and its own logits


def test_bf16_teacher_outputs_have_their_own_cache_key(fresh_demo, tmp_path):
    _, ds = train_set(fresh_demo)
    teacher = make_teacher()
    fp32, path32, _ = load_or_compute(teacher, ds, tmp_path, views=2)
    bf16, path16, fresh = load_or_compute(teacher, ds, tmp_path, views=2, precision="bf16")
    assert fresh and path16 != path32  # never a reuse of outputs computed in another precision
    assert bf16.logits.dtype == torch.float32 and not torch.equal(bf16.logits, fp32.logits)
    scale = fp32.logits.abs().max()
    assert (bf16.logits - fp32.logits).abs().max() < 0.05 * scale  # bfloat16 rounding, not another model
    assert torch.equal(bf16.seeds, fp32.seeds)  # the same recorded views
    images = torch.stack([ds.view(i, int(bf16.seeds[i, 1])) for i in (0, 3)])
    online = teacher_forward(teacher, images, "bf16")  # what an online bf16 teacher gives on those views
    assert torch.allclose(online, bf16.logits[[0, 3], 1], atol=1e-5)
