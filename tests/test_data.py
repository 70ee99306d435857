import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.data import WasteDataModule, predict_samples, read_layout, stack_views, stratified_split
from distill.demo import CLASSES
from distill.preprocess import ImageLoadError, load_rgb, resize_uint8, to_square
from distill.transforms import augmentation


def test_layout_parsing(demo_root):
    classes, train, val = read_layout(demo_root)
    assert classes == sorted(CLASSES)
    n_train = sum(len(list((demo_root / "train" / c).glob("*.jpg"))) for c in classes)
    assert len(train) == n_train and len(val) > 0
    # label index matches the folder
    assert all(s.path.parent.name == classes[s.label] for s in train + val)


def test_class_mismatch_is_a_clear_error(fresh_demo):
    shutil.rmtree(fresh_demo / "val" / "Glass")
    with pytest.raises(ValueError, match=r"only in train: \['Glass'\]"):
        read_layout(fresh_demo)


def test_missing_root_and_train_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_layout(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="train"):
        read_layout(tmp_path / "x")


def test_hidden_and_non_image_files_ignored(fresh_demo):
    (fresh_demo / "train" / "Glass" / ".DS_Store").write_bytes(b"junk")
    (fresh_demo / "train" / "Glass" / "notes.txt").write_text("hi")
    (fresh_demo / "train" / ".hidden_class").mkdir()
    classes, train, _ = read_layout(fresh_demo)
    assert ".hidden_class" not in classes
    assert not any(s.path.name in (".DS_Store", "notes.txt") for s in train)


def test_stratified_split_is_seeded_and_stratified():
    labels = [0] * 50 + [1] * 20 + [2] * 10
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert sorted(tr + va) == list(range(80)) and not set(tr) & set(va)
    assert [sum(labels[i] == c for i in va) for c in range(3)] == [10, 4, 2]
    assert stratified_split(labels, 0.2, seed=3) == (tr, va)
    assert stratified_split(labels, 0.2, seed=4) != (tr, va)


def test_merge_mode_uses_train_and_val(demo_root):
    given = WasteDataModule(str(demo_root), image_size=32)
    merged = WasteDataModule(str(demo_root), image_size=32, val_mode="merge", val_fraction=0.25, seed=0)
    total = len(given.train_samples) + len(given.val_samples)
    assert len(merged.train_samples) + len(merged.val_samples) == total
    assert merged.num_classes == 9 and sum(merged.class_counts) == len(merged.train_samples)
    val_paths = {s.path for s in merged.val_samples}
    assert any(p.parent.parent.name == "train" for p in val_paths)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "RGB"])
def test_every_mode_loads_as_rgb(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 9, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray((np.arange(108).reshape(12, 9) * 600).astype(np.uint16))
        assert image.mode.startswith("I;16")
    elif mode == "CMYK":
        image = rgb.convert("CMYK")
    else:
        image = rgb.convert(mode)
    path = tmp_path / ("x.jpg" if mode in ("CMYK", "L", "RGB") else "x.png")
    image.save(path)
    arr = load_rgb(path)
    assert arr.shape == (12, 9, 3) and arr.dtype == np.uint8
    if mode == "I;16":  # 16-bit range is scaled, not clipped
        assert arr.max() > 200 and arr.min() == 0


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (30, 10, 3)


def test_unreadable_files_skipped_with_one_warning(fresh_demo):
    bad1 = fresh_demo / "train" / "Glass" / "broken.jpg"
    bad1.write_bytes(b"this is not a jpeg")
    bad2 = fresh_demo / "val" / "Metal" / "empty.jpg"
    bad2.write_bytes(b"")
    dm = WasteDataModule(str(fresh_demo), image_size=24)
    n_before = len(dm.train_samples) + len(dm.val_samples)
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as record:
        dm.setup("fit")
    message = str(record[0].message)
    assert "broken.jpg" in message and "empty.jpg" in message
    assert len(dm.skipped_files) == 2 and set(dm.skipped_files) == {str(bad1), str(bad2)}
    assert len(dm.train_set) + len(dm.val_set) == n_before - 2

    strict = WasteDataModule(str(fresh_demo), image_size=24, strict=True)
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        strict.setup("fit")


@pytest.mark.parametrize("keep_aspect", [True, False])
def test_transform_output_shapes(demo_root, keep_aspect):
    dm = WasteDataModule(str(demo_root), image_size=40, batch_size=5, augment="strong", keep_aspect=keep_aspect)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 40, 40) and batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.int64 and batch["index"].shape == (5,)
    # batched in the models' layout without a per-image copy into planes: the same pixels as plain stacking
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)


def test_views_are_batched_channels_last_with_the_same_pixels(demo_root):
    dm = WasteDataModule(str(demo_root), image_size=40, augment="strong")
    dm.setup("fit")
    views = [dm.train_set.view(i, seed=i) for i in range(4)]
    batch = stack_views(views)
    assert torch.equal(batch, torch.stack([v.contiguous() for v in views]))
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_the_uint8_resize_is_within_one_grey_level_of_the_float_resize():
    images = torch.randint(0, 256, (3, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fast = resize_uint8(images, 40)
    through_float = torch.nn.functional.interpolate(images.float(), size=(40, 40), mode="bilinear", antialias=True)
    assert fast.dtype == torch.uint8 and fast.shape == (3, 3, 40, 40)
    assert (fast.float() - through_float.round().clamp(0, 255)).abs().max() <= 1


def test_to_square_keeps_aspect_by_padding():
    image = np.full((10, 40, 3), 255, np.uint8)
    square = to_square(image, 20)
    assert square.shape == (20, 20, 3)
    assert square[0].max() == 0 and square[10].min() == 255  # black bars top, content in the middle
    assert to_square(image, 20, keep_aspect=False).min() == 255
    assert to_square(np.zeros((1, 1, 3), np.uint8), 16).shape == (16, 16, 3)


def test_augmentation_presets_and_bad_name():
    """``none`` leaves an image as it is, ``light`` changes it and ``strong`` changes it more (mean pixel change
    over 20 seeded views), each view the same for the same seed."""
    from distill.transforms import seed_pipeline

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    change = {}
    for preset in ("none", "light", "strong"):
        pipeline, diffs = augmentation(preset), []
        for seed in range(20):
            seed_pipeline(pipeline, seed)
            view = pipeline(image=image)["image"]
            seed_pipeline(pipeline, seed)
            assert view.shape == (32, 32, 3) and np.array_equal(view, pipeline(image=image)["image"])
            diffs.append(np.abs(view.astype(int) - image).mean())
        change[preset] = float(np.mean(diffs))
    assert change["none"] == 0 < change["light"] < change["strong"]
    with pytest.raises(ValueError, match="augment"):
        augmentation("medium")


def test_the_transforms_of_a_view_draw_independently(demo_root):
    """A view seeds its pipeline once: two flips of p=0.5 give all four outcomes about equally often (with a
    generator of the same seed per transform, as albumentations' set_random_seed does, both or neither)."""
    import albumentations as A

    dm = WasteDataModule(str(demo_root), image_size=32, augment="strong")
    dm.setup("fit")
    dataset = dm.train_set
    dataset.augment = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    base = dataset.base_image(0)
    outcomes = {"none": base, "h": base[:, ::-1], "v": base[::-1], "hv": base[::-1, ::-1]}
    seen = []
    for seed in range(200):
        view = dataset.view(0, seed).permute(1, 2, 0).numpy()
        seen.append(next(name for name, image in outcomes.items() if np.array_equal(view, image)))
    counts = {name: seen.count(name) for name in outcomes}
    assert all(n >= 30 for n in counts.values()), counts
    assert torch.equal(dataset.view(0, 7), dataset.view(0, 7))  # same seed, same pixels


def test_cache_gives_same_pixels_as_direct_loading(demo_root):
    cached = WasteDataModule(str(demo_root), image_size=32, augment="none", cache_images=True)
    direct = WasteDataModule(str(demo_root), image_size=32, augment="none", cache_images=False)
    cached.setup("fit"), direct.setup("fit")
    for i in (0, 5, len(cached.train_set) - 1):
        assert torch.equal(cached.train_set[i]["image"], direct.train_set[i]["image"])


def test_predict_data_sorted_with_names(demo_root):
    samples = predict_samples(demo_root / "test" / "NoLabel")
    names = [s.path.name for s in samples]
    assert names == sorted(names) and len(names) == 7
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        predict_samples(Path(demo_root) / "missing_folder")


def test_disk_image_cache_matches_ram_and_is_reused(demo_root, tmp_path, monkeypatch):
    ram = WasteDataModule(str(demo_root), image_size=32, augment="none")
    disk = WasteDataModule(str(demo_root), image_size=32, augment="none", image_cache_dir=str(tmp_path / "imgs"))
    ram.setup("fit"), disk.setup("fit")
    assert isinstance(disk.train_set.cache, np.memmap)
    assert all(torch.equal(ram.train_set[i]["image"], disk.train_set[i]["image"]) for i in range(len(ram.train_set)))
    import distill.images
    import distill.preprocess

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(distill.preprocess, "load_square", no_decoding)
    monkeypatch.setattr(distill.images, "load_square", no_decoding)
    again = WasteDataModule(str(demo_root), image_size=32, augment="none", image_cache_dir=str(tmp_path / "imgs"))
    again.setup("fit")
    assert torch.equal(again.train_set[3]["image"], ram.train_set[3]["image"])


def test_cache_key_follows_content_not_place_or_time(fresh_demo, tmp_path):
    """A dataset copied elsewhere with new modification times keeps its caches; an image edited in place (same
    name, same size) does not."""
    import os

    from distill.data import files_key

    def key(root):
        _, train, _ = read_layout(root)
        return files_key(train, {"size": 32})

    copy = tmp_path / "copy"
    shutil.copytree(fresh_demo, copy)
    for path in copy.rglob("*.jpg"):
        os.utime(path, ns=(1, 1))
    assert key(copy) == key(fresh_demo)
    image = sorted((copy / "train").rglob("*.jpg"))[0]
    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF
    image.write_bytes(bytes(data))
    assert key(copy) != key(fresh_demo)
    _, train, _ = read_layout(fresh_demo)
    assert files_key(train, {"size": 64}) != key(fresh_demo)


def test_a_file_without_read_permission_is_left_to_decoding(fresh_demo, monkeypatch):
    """Keying must not abort a run that decoding would finish by skipping the file with its warning."""
    from distill.data import files_key

    _, train, _ = read_layout(fresh_demo)
    readable = files_key(train, {})
    real_read = Path.read_bytes

    def read_bytes(path):
        if path == train[0].path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert files_key(train, {}) != readable


def test_cache_memory_estimate_is_what_the_image_cache_takes(demo_root):
    """The size ``image cache: ...`` announces is the size of the array decoding then holds."""
    from distill.data import cache_bytes, decode_all, read_layout

    _, train, _ = read_layout(demo_root)
    cache, good, _ = decode_all(train[:7], 40, True, "decoding")
    assert cache.nbytes == cache_bytes(len(good), 40) and len(good) == 7


def test_holdout_split_is_disjoint_stratified_and_independent_of_the_run(fresh_demo):
    from distill.data import WasteDataModule

    dm = WasteDataModule(str(fresh_demo), image_size=32, holdout_fraction=0.2, seed=0)
    held = {s.path for s in dm.holdout_samples}
    assert held and not held & {s.path for s in dm.train_samples + dm.val_samples}
    labels = {s.label for s in dm.holdout_samples}
    assert len(labels) == dm.num_classes  # every class is represented
    merged = WasteDataModule(str(fresh_demo), image_size=32, holdout_fraction=0.2, seed=7, val_mode="merge")
    assert {s.path for s in merged.holdout_samples} == held  # the run's seed and val_mode do not move it
    other = WasteDataModule(str(fresh_demo), image_size=32, holdout_fraction=0.2, holdout_seed=1)
    assert {s.path for s in other.holdout_samples} != held
    assert not WasteDataModule(str(fresh_demo), image_size=32).holdout_samples  # 0 = off
