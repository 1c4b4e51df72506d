"""Your files, read faithfully: `dataset.limit` stratified on data stored class by class, EXIF
orientation applied, dot-folders skipped, object arrays and decompression bombs refused in one
line, unlabeled folders read with their subfolders, and Pillow's pixels for a JPEG (issue 28)."""

import logging

import numpy as np
import pytest
from PIL import Image

from harness.config import ConfigError, DatasetConfig, TransferConfig
from harness.data import sources, unlabeled

CLASSES = ["a", "b", "c", "d"]


def _image(k, size=(8, 12), channels=1, seed=0):
    """Class k's image: a left-to-right ramp (so a turn shows) over a brightness that tells the class."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 40, size[1])[None, :, None]
    x = 50 * k + ramp + rng.integers(0, 8, (*size, channels))
    return np.clip(x, 0, 255).astype(np.uint8)


def _save(path, x, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x).save(path, **kw)


def _folder(root, per_class=6, classes=CLASSES, **kw):
    written = {}
    for k, name in enumerate(classes):
        written[name] = [_image(k, seed=i, **kw) for i in range(per_class)]
        for i, x in enumerate(written[name]):
            _save(root / name / f"{i:02d}.png", x)
    return written


def _load(tmp_path, limit=None, **fields):
    return sources.load_splits(DatasetConfig(limit=limit, **fields), seed=0, source=str(tmp_path / "study.yaml"))


def _counts(split, k=4):
    return np.bincount(split.labels, minlength=k).tolist()


# ---------------------------------------------------------------- 2. limit: a stratified draw


def _arrays(root, images, labels, names):
    np.savez(root / "d.npz", x_train=images, y_train=labels, class_names=np.array(names))
    return root / "d.npz"


def _png_folder(root, images, labels, names):
    for i, (x, y) in enumerate(zip(images, labels)):
        _save(root / "images" / names[y] / f"{i:03d}.png", x)
    return root / "images"


# One writer per reader in `sources.READERS` (a new reader gets its writer here): the contract tests
# run over every registered reader.
WRITERS = {"arrays": _arrays, "folder": _png_folder}


def test_every_reader_has_a_writer_here():
    assert set(WRITERS) == set(sources.READERS)


@pytest.mark.parametrize("kind", sorted(sources.READERS))
def test_every_reader_gives_back_the_images_and_classes_it_was_given(kind, tmp_path):
    images = np.stack([_image(k, seed=i) for k in range(4) for i in range(10)])
    labels = np.repeat(np.arange(4), 10)
    where = WRITERS[kind](tmp_path, images, labels, CLASSES)
    s = _load(tmp_path, **{kind: str(where)})
    assert s.kind == kind and s.class_names == CLASSES and s.image_shape == (8, 12, 1) and s.num_classes == 4
    got = np.concatenate([s.transfer.images, s.validation.images, s.test.images])
    got_labels = np.concatenate([s.transfer.labels, s.validation.labels, s.test.labels])
    assert got.dtype == np.uint8 and got_labels.dtype == np.int64
    # every image once, with its own class (the splits are disjoint and cover the data)
    written = sorted((int(y), x.tobytes()) for x, y in zip(images, labels))
    assert sorted((int(y), x.tobytes()) for x, y in zip(got, got_labels)) == written


@pytest.mark.parametrize("kind", sorted(sources.READERS))
def test_limit_draws_a_seeded_class_stratified_subset_of_data_stored_by_class(kind, tmp_path, caplog):
    if kind == "arrays":
        x = np.stack([_image(k, seed=i) for k in range(4) for i in range(40)])
        y = np.repeat(np.arange(4), 40)  # stored class by class, as a data set on disk often is
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
        fields = {"arrays": str(tmp_path / "d.npz")}
    else:
        _folder(tmp_path / "images", per_class=30)
        fields = {"folder": str(tmp_path / "images")}
    with caplog.at_level(logging.INFO):
        s = _load(tmp_path, limit=8, **fields)
        again = _load(tmp_path, limit=8, **fields)
    for split in (s.transfer, s.validation, s.test):
        assert len(split) == 8 and _counts(split) == [2, 2, 2, 2], _counts(split)
    np.testing.assert_array_equal(s.transfer.index, again.transfer.index)  # seeded
    assert not set(s.transfer.index) & set(s.validation.index)
    assert "transfer split: 8 examples, per class [2, 2, 2, 2]" in caplog.text


def test_limit_on_a_tfds_name_keeps_every_class_and_a_missing_class_is_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        s = sources.load_splits(DatasetConfig(limit=40), seed=0)
    for split in (s.transfer, s.validation, s.test):
        assert len(split) == 40 and min(_counts(split, 10)) >= 1, _counts(split, 10)
    x = np.stack([_image(k % 2, seed=k) for k in range(8)])
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1] * 4), x_test=x[:2], y_test=np.array([0, 0]))
    with caplog.at_level(logging.WARNING):
        _load(tmp_path, arrays=str(tmp_path / "d.npz"))
    assert "the test split has no example of class(es) 1" in caplog.text


# ---------------------------------------------------------------- 4. EXIF orientation, 16. one decoder


def _tagged(path, upright, orientation=6):
    """`upright` stored turned, with the EXIF tag that tells a viewer how to turn it back."""
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    _save(path, np.ascontiguousarray(stored), exif=exif.tobytes())


def test_exif_orientation_is_applied_as_a_viewer_shows_the_image(tmp_path, caplog):
    written = _folder(tmp_path / "images", per_class=3)
    upright = _image(1, seed=9)
    _tagged(tmp_path / "images" / "b" / "03.png", upright, 6)
    _tagged(tmp_path / "images" / "c" / "03.png", _image(2, seed=9), 8)
    with caplog.at_level(logging.INFO):
        s = _load(tmp_path, folder=str(tmp_path / "images"), test_fraction=0.25)
    assert s.image_shape == (8, 12, 1)
    everything = np.concatenate([s.transfer.images, s.validation.images, s.test.images])
    assert any(np.array_equal(x, upright) for x in everything)
    assert sum(np.array_equal(x, w) for x in everything for ws in written.values() for w in ws) == 12
    assert "2 image(s) carry an EXIF orientation" in caplog.text
    # the unlabeled reader turns them too
    _tagged(tmp_path / "more" / "x.png", upright, 3)
    got = unlabeled.read(TransferConfig(unlabeled=str(tmp_path / "more")), str(tmp_path / "s.yaml"), (8, 12, 1))
    np.testing.assert_array_equal(got[0], upright)


def test_a_jpeg_is_decoded_to_pillows_pixels(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 32x32, blocky
    for k, name in enumerate(["dark", "light"]):
        for i in range(4):
            _save(tmp_path / "jpegs" / name / f"{i}.jpg", np.clip(smooth.astype(int) + 40 * k + i, 0, 255)
                  .astype(np.uint8), quality=70)
    s = _load(tmp_path, folder=str(tmp_path / "jpegs"), validation_fraction=0.0, test_fraction=0.25)
    files = sorted((tmp_path / "jpegs").rglob("*.jpg"))
    pillow = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    for x, i in zip(s.transfer.images, s.transfer.index):
        np.testing.assert_array_equal(x, pillow[i])
    got = unlabeled.read(TransferConfig(unlabeled=str(tmp_path / "jpegs" / "dark")), str(tmp_path / "s.yaml"),
                         (32, 32, 3))
    np.testing.assert_array_equal(got, np.stack(pillow[:4]))


# ---------------------------------------------------------------- 7. dot-folders, 8. object arrays, 9. bombs


def test_hidden_folders_and_files_are_skipped_as_keras_skips_them(tmp_path, caplog):
    root = tmp_path / "images"
    _folder(root, per_class=3)
    (root / ".ipynb_checkpoints").mkdir()  # empty: once named as a class
    _save(root / ".cache" / "x.png", _image(0))  # with files: once a traceback
    _save(root / "a" / ".ipynb_checkpoints" / "00-checkpoint.png", _image(3))
    (root / "b" / ".DS_Store").write_bytes(b"\0\1")
    with caplog.at_level(logging.INFO):
        s = _load(tmp_path, folder=str(root), test_fraction=0.34)
    assert s.class_names == CLASSES and len(s.transfer) + len(s.validation) + len(s.test) == 12
    assert "4 hidden file(s) or folder(s) (names starting with '.') skipped" in caplog.text


def test_an_object_array_is_refused_in_one_line(tmp_path):
    x = np.stack([_image(k % 2, seed=k) for k in range(6)])
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(6) % 2, class_names=np.array(["cat", "dog"], object))
    with pytest.raises(ConfigError, match=r"dataset.arrays: .*d.npz: class_names is an array of Python objects "
                                          r".*np.array\(names, dtype=str\)") as e:
        _load(tmp_path, arrays=str(tmp_path / "d.npz"))
    assert "\n" not in str(e.value)
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=np.arange(6) % 2, class_names=np.array(["cat", "dog"]))
    assert _load(tmp_path, arrays=str(tmp_path / "ok.npz")).class_names == ["cat", "dog"]


def test_a_decompression_bomb_is_named_and_a_large_image_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # bombs over 2,000 pixels: 48x48 is one, 40x40 is not
    root = tmp_path / "images"
    _folder(root, per_class=3)
    _save(root / "a" / "large.png", np.full((40, 40, 1), 10, np.uint8))
    s = _load(tmp_path, folder=str(root), image_size=[8, 12], test_fraction=0.25)
    assert len(s.transfer) + len(s.validation) + len(s.test) == 13
    _save(root / "b" / "bomb.png", np.zeros((48, 48, 1), np.uint8))
    with pytest.raises(ConfigError, match=r"dataset.folder: .*bomb.png: a decompression bomb") as e:
        _load(tmp_path, folder=str(root), image_size=[8, 12])
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- 10. unlabeled folders, recursively


def test_an_unlabeled_folder_is_read_with_its_subfolders(tmp_path):
    root = tmp_path / "unlabeled"
    for i in range(2):
        _save(root / f"top{i}.png", _image(0, seed=i))
    for i in range(3):
        _save(root / "batch1" / "deeper" / f"{i}.png", _image(1, seed=i))
    _save(root / ".ipynb_checkpoints" / "x.png", _image(2))
    got = unlabeled.read(TransferConfig(unlabeled=str(root)), str(tmp_path / "s.yaml"), (8, 12, 1))
    assert len(got) == 5
    _save(root / "batch2" / "new.png", _image(3))  # a new file in a subfolder is seen
    assert len(unlabeled.read(TransferConfig(unlabeled=str(root)), str(tmp_path / "s.yaml"), (8, 12, 1))) == 6
