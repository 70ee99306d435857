import lightning as L
import torch

from distill.data import WasteDataModule
from distill.losses import kd_loss
from distill.module import DistillModule
from distill.preprocess import model_input, resize_uint8
from distill.teacher import FrozenTeacher
from distill.teacher_cache import CachedViews, TeacherCache, compute_teacher_outputs, load_or_compute, render_views
from models import create_model


def make_teacher(seed=0, precision="32"):
    torch.manual_seed(seed)
    return FrozenTeacher(create_model("micro", 9, input_size=40), precision)


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
    cached = CachedViews(ds, outputs)
    torch.manual_seed(0)
    item = cached[5]
    k = next(k for k in range(3) if torch.equal(outputs.logits[5, k], item["teacher_logits"]))
    assert torch.equal(item["image"], ds.view(5, int(outputs.seeds[5, k])))
    assert item["label"] == ds.samples[5].label and item["index"] == 5


def test_cached_and_online_kd_losses_are_identical(demo_root):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    outputs = compute_teacher_outputs(teacher, ds, views=2, seed=7, batch_size=5)
    student = create_model("nano", 9, input_size=32).eval()
    idx = [(0, 0), (4, 1), (9, 0), (11, 1)]
    images = torch.stack([ds.view(i, int(outputs.seeds[i, k])) for i, k in idx])
    with torch.no_grad():
        online = teacher(images)
        s = student(model_input(images, student.preprocess))
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
        teacher.model.classifier[3].bias.add_(0.1)
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
    module = DistillModule(9, student="nano", input_size=32, teacher=make_teacher().model)
    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch["teacher_logits"].shape)

    cache = TeacherCache(views=2, cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_epochs=1, callbacks=[cache, Spy()], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, dm)
    assert cache.path.exists() and module.teacher is None  # trained from the cache alone
    assert isinstance(dm.train_set, CachedViews) and seen and all(s[1] == 9 for s in seen)
    assert module.best_val_f1 is not None


def test_fill_with_loader_workers_gives_the_same_outputs(demo_root):
    _, ds = train_set(demo_root)
    teacher = make_teacher()
    serial = compute_teacher_outputs(teacher, ds, views=2, seed=5, batch_size=7)
    parallel = compute_teacher_outputs(teacher, ds, views=2, seed=5, batch_size=7, num_workers=2)
    assert torch.equal(serial.seeds, parallel.seeds)
    assert torch.allclose(serial.logits, parallel.logits, atol=1e-6)


def test_rendered_views_are_the_replayed_views_at_student_size(demo_root):
    _, ds = train_set(demo_root)
    outputs = compute_teacher_outputs(make_teacher(), ds, views=2, seed=3)
    rendered = render_views(ds, outputs.seeds, size=24, batch_size=5, num_workers=2)
    assert rendered.shape == (len(ds), 2, 3, 24, 24) and rendered.dtype == torch.uint8
    for i, k in [(0, 0), (7, 1)]:
        replayed = ds.view(i, int(outputs.seeds[i, k]))
        assert torch.equal(rendered[i, k], resize_uint8(replayed[None], 24)[0])
    item = CachedViews(ds, outputs, rendered)[7]
    k = next(k for k in range(2) if torch.equal(outputs.logits[7, k], item["teacher_logits"]))
    assert torch.equal(item["image"], rendered[7, k])  # the batch carries the rendered view and its own logits


def test_bf16_teacher_outputs_have_their_own_cache_key(fresh_demo, tmp_path):
    _, ds = train_set(fresh_demo)
    teacher, teacher16 = make_teacher(), make_teacher(precision="bf16")
    fp32, path32, _ = load_or_compute(teacher, ds, tmp_path, views=2)
    bf16, path16, fresh = load_or_compute(teacher16, ds, tmp_path, views=2)
    assert fresh and path16 != path32  # never a reuse of outputs computed in another precision
    assert bf16.logits.dtype == torch.float32 and not torch.equal(bf16.logits, fp32.logits)
    scale = fp32.logits.abs().max()
    assert (bf16.logits - fp32.logits).abs().max() < 0.05 * scale  # bfloat16 rounding, not another model
    assert torch.equal(bf16.seeds, fp32.seeds)  # the same recorded views
    images = torch.stack([ds.view(i, int(bf16.seeds[i, 1])) for i in (0, 3)])
    assert torch.allclose(teacher16(images), bf16.logits[[0, 3], 1], atol=1e-5)  # = an online bf16 teacher
