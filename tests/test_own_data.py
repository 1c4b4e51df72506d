"""Your own images (a folder of class subfolders, an .npz), the data's digest in every cache key, and
the TFDS faults: a download with no network, no test split, images of varying size."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import yaml
from helpers import mlflow_client, run_cli

from harness import config
from harness.config import ConfigError, DatasetConfig
from harness.data import sources, tfds_data
from harness.teacher import trained as teacher
from harness.training import twin

CLASSES = ["cat", "dog", "emu"]


def _png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


def make_folder(root, per_class=12, size=(32, 32), channels=3, seed=0, classes=CLASSES):
    """`root/<class>/<i>.png`: random images whose mean brightness tells the class. Returns
    {class: [images in file order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for k, name in enumerate(classes):
        imgs = []
        for i in range(per_class):
            img = rng.integers(0, 80, size=(*size, channels)).astype(np.uint8) + np.uint8(80 * k)
            _png(root / name / f"{i:03d}.png", img)
            imgs.append(img)
        written[name] = imgs
    return written


def _load(tmp_path, **fields):
    return sources.load_splits(DatasetConfig(**fields), seed=0, source=str(tmp_path / "study.yaml"))


def test_a_folder_with_train_and_test_subfolders(tmp_path):
    train = make_folder(tmp_path / "data" / "train", per_class=10)
    test = make_folder(tmp_path / "data" / "test", per_class=4, seed=1)
    s = _load(tmp_path, folder=str(tmp_path / "data"))
    assert s.class_names == CLASSES and s.num_classes == 3 and s.kind == "folder"
    assert s.image_shape == (32, 32, 3) and s.test_source == "test"
    assert len(s.test) == 12 and len(s.transfer) + len(s.validation) == 30 and len(s.validation) == 3
    # the pixels as written (PNG is lossless), each under its folder's class id, test in file order
    np.testing.assert_array_equal(s.test.images[4 * 2 + 1], test["emu"][1])
    np.testing.assert_array_equal(s.test.labels, np.repeat([0, 1, 2], 4))
    for x, y, i in zip(s.transfer.images, s.transfer.labels, s.transfer.index):
        np.testing.assert_array_equal(x, train[CLASSES[y]][i - 10 * y])
    assert not set(s.transfer.index) & set(s.validation.index)


def test_a_single_folder_gives_a_stratified_seeded_test_slice(tmp_path):
    make_folder(tmp_path / "data", per_class=20)
    s = _load(tmp_path, folder=str(tmp_path / "data"), test_fraction=0.2)
    assert s.test_source == "train (stratified 20%)"
    assert np.bincount(s.test.labels).tolist() == [4, 4, 4]
    parts = [set(p.index) for p in (s.transfer, s.validation, s.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == 60
    again = _load(tmp_path, folder=str(tmp_path / "data"), test_fraction=0.2)
    other = sources.load_splits(DatasetConfig(folder=str(tmp_path / "data"), test_fraction=0.2), seed=1)
    np.testing.assert_array_equal(s.test.index, again.test.index)
    assert not np.array_equal(s.test.index, other.test.index)
    assert s.digest == again.digest != other.digest


def test_color_mode_and_image_size(tmp_path):
    make_folder(tmp_path / "rgb", per_class=3)
    make_folder(tmp_path / "gray", per_class=3, channels=1)
    assert _load(tmp_path, folder=str(tmp_path / "rgb")).image_shape == (32, 32, 3)
    assert _load(tmp_path, folder=str(tmp_path / "gray")).image_shape == (32, 32, 1)  # null: as the files are
    gray = _load(tmp_path, folder=str(tmp_path / "rgb"), color_mode="grayscale")
    assert gray.image_shape == (32, 32, 1) and gray.transfer.images.shape[-1] == 1
    assert _load(tmp_path, folder=str(tmp_path / "gray"), color_mode="rgb").image_shape == (32, 32, 3)
    small = _load(tmp_path, folder=str(tmp_path / "rgb"), image_size=[16, 20])
    assert small.image_shape == (16, 20, 3) and small.transfer.images.dtype == np.uint8


def test_mixed_sizes_are_resized_when_image_size_is_given(tmp_path):
    make_folder(tmp_path / "data", per_class=4)
    _png(tmp_path / "data" / "dog" / "big.png", np.full((40, 30, 3), 7, np.uint8))
    s = _load(tmp_path, folder=str(tmp_path / "data"), image_size=[24, 24])
    assert s.image_shape == (24, 24, 3) and len(s.transfer) + len(s.validation) + len(s.test) == 13


def test_the_digest_follows_the_pixels_not_the_name(tmp_path):
    make_folder(tmp_path / "data", per_class=6)
    first = _load(tmp_path, folder=str(tmp_path / "data")).digest
    assert _load(tmp_path, folder=str(tmp_path / "data")).digest == first
    f = tmp_path / "data" / "dog" / "002.png"
    img = tf.io.decode_png(f.read_bytes()).numpy()
    img[5, 5, 0] ^= 1  # one pixel, one bit
    _png(f, img)
    assert _load(tmp_path, folder=str(tmp_path / "data")).digest != first


def test_arrays_in_an_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 10, 12)).astype(np.float32)  # [n, h, w] floats 0-255
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:8].astype(np.uint8), y_test=y[:8])
    s = _load(tmp_path, arrays=str(tmp_path / "d.npz"))
    assert s.image_shape == (10, 12, 1) and s.num_classes == 4 and s.class_names == ["0", "1", "2", "3"]
    assert s.transfer.images.dtype == np.uint8 and len(s.test) == 8 and s.kind == "arrays"
    np.testing.assert_array_equal(s.transfer.images[..., 0], x[s.transfer.index])
    np.savez(tmp_path / "n.npz", x_train=x, y_train=y, class_names=np.array(list("abcd")))
    named = _load(tmp_path, arrays=str(tmp_path / "n.npz"))
    assert named.class_names == list("abcd") and np.bincount(named.test.labels).tolist() == [1, 1, 1, 1]


# ------------------------------------------------------------------ TFDS datasets made here


class OwnDataToy(tfds.core.GeneratorBasedBuilder):
    """30 train and 9 test images of 8x8x3 in 3 classes; FILL seeds the pixels."""
    VERSION = tfds.core.Version("1.0.0")
    pkg_dir_path = Path(__file__).parent  # TFDS looks for metadata beside the builder's package
    SHAPE = (8, 8, 3)
    SPLITS = ("train", "test")
    FILL = 0

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"image": tfds.features.Image(shape=self.SHAPE),
                                                 "label": tfds.features.ClassLabel(names=CLASSES)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {s: self._generate_examples(s) for s in self.SPLITS}

    def _generate_examples(self, split):
        rng = np.random.default_rng([self.FILL, len(split)])
        for i in range(30 if split == "train" else 9):
            shape = self.SHAPE if None not in self.SHAPE else (8 + i % 3, 9, 3)
            # channel i % 3 is bright: a teacher can learn the class (a teacher at chance is refused)
            image = rng.integers(0, 60, size=shape).astype(np.uint8)
            image[..., i % 3] += 150
            yield i, {"image": image, "label": i % 3}


class OwnDataNoTest(OwnDataToy):
    SPLITS = ("train",)


class OwnDataSizes(OwnDataToy):
    SHAPE = (None, None, 3)


def _prepared(cls, data_dir, fill=0):
    cls.FILL = fill
    cls(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def test_two_data_dirs_with_one_name_share_no_teacher_or_twin(tmp_path):
    """Fault 1: the keys hold what the data are, not what they are called."""
    a = _load(tmp_path, name="own_data_toy", data_dir=_prepared(OwnDataToy, tmp_path / "a", fill=1))
    b = _load(tmp_path, name="own_data_toy", data_dir=_prepared(OwnDataToy, tmp_path / "b", fill=2))
    a_again = _load(tmp_path, name="own_data_toy", data_dir=str(tmp_path / "a"))
    assert a.digest != b.digest and a.digest == a_again.digest
    cfg = config.parse({"name": "toy", "teacher": {"widths": [16], "epochs": 30, "jitter": 0, "batch_size": 8,
                                                   "learning_rate": 0.003, "dropout": 0.0, "input_dropout": 0.0},
                        "dataset": {"name": "own_data_toy"}})
    assert teacher.cache_key(cfg, a.digest) != teacher.cache_key(cfg, b.digest)
    assert twin.key(cfg, 16, 0, data=a.digest) != twin.key(cfg, 16, 0, data=b.digest)
    cache = tmp_path / "teacher_cache"
    assert not teacher.load_or_train(cfg, a, cache).from_cache
    assert not teacher.load_or_train(cfg, b, cache).from_cache  # the first study's teacher is not served
    assert teacher.load_or_train(cfg, a_again, cache).from_cache


def test_a_stored_study_is_resumed_only_on_its_own_data(tmp_path):
    from types import SimpleNamespace

    from harness.search import stores

    cfg = config.parse({"name": "s"}, str(tmp_path / "s.yaml"))
    ws = stores.Workspace.resolve(tmp_path)
    a, b = (SimpleNamespace(digest=c * 64, image_shape=(4, 4, 1)) for c in "ab")
    now = stores.check_contents(cfg, ws, a)  # no study yet
    stores.record_contents(stores.create_study(cfg, ws), now)
    stores.check_contents(cfg, ws, a)
    with pytest.raises(stores.StudyError, match=r"s.yaml: dataset: its data changed since study 's' .* new `name:`"):
        stores.check_contents(cfg, ws, b)


def test_a_tfds_dataset_without_a_test_split_gets_a_stratified_slice(tmp_path, caplog):
    """Fault 6."""
    s = _load(tmp_path, name="own_data_no_test", data_dir=_prepared(OwnDataNoTest, tmp_path / "tfds"),
              test_fraction=0.2)
    assert s.test_source == "train (stratified 20%)" and np.bincount(s.test.labels).tolist() == [2, 2, 2]
    assert not set(s.test.index) & (set(s.transfer.index) | set(s.validation.index))
    assert "has no 'test' split" in caplog.text


def test_tfds_images_of_varying_size_need_image_size(tmp_path):
    """Fault 7: one line asking for dataset.image_size; with it, resized."""
    d = _prepared(OwnDataSizes, tmp_path / "tfds")
    with pytest.raises(ConfigError, match=r"dataset.image_size: .*vary in size \(None, None, 3\)"):
        _load(tmp_path, name="own_data_sizes", data_dir=d)
    s = _load(tmp_path, name="own_data_sizes", data_dir=d, image_size=[6, 7])
    assert s.image_shape == (6, 7, 3) and s.transfer.images.dtype == np.uint8 and len(s.test) == 9


def test_a_tfds_name_that_needs_a_download_fails_fast_without_a_network(tmp_path, capsys):
    """Fault 5: within seconds, one line, exit 2, nothing left in the data dir or the workdir."""
    if tfds_data.online():
        pytest.skip("this machine has a network: the download would be made")
    data_dir = tmp_path / "tfds"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"dataset.name: 'mnist' is not prepared .* needs a download.*"
                                          r"dataset.data_dir.*dataset.folder"):
        _load(tmp_path, name="mnist", data_dir=str(data_dir))
    assert time.perf_counter() - t0 < 20
    assert not data_dir.exists()
    data_dir.mkdir()
    (data_dir / "mine.txt").write_text("kept")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "m", "dataset": {"name": "mnist", "data_dir": str(data_dir)}}))
    (work := tmp_path / "work").mkdir()
    t0 = time.perf_counter()
    code, out, err = run_cli(["study", study, "--workdir", work], capsys)
    assert code == 2 and time.perf_counter() - t0 < 20
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "dataset.name" in lines[0] and str(study) in lines[0]
    assert "Traceback" not in out + err
    assert [p.name for p in data_dir.iterdir()] == ["mine.txt"] and list(work.iterdir()) == []


class OwnDataBroken(OwnDataToy):
    """A download that breaks halfway through writing the dataset."""

    def _generate_examples(self, split):
        yield from list(super()._generate_examples(split))[:5]
        raise ConnectionError("the connection was reset")


def test_a_failed_download_leaves_the_data_dir_as_it_was(tmp_path, monkeypatch):
    """Fault 5, with a network: what the attempt wrote is removed, what was there stays."""
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(tfds_data, "PROBE_URL", f"http://127.0.0.1:{server.server_port}/")
    try:
        data_dir = tmp_path / "tfds"
        (data_dir / "downloads").mkdir(parents=True)
        (data_dir / "downloads" / "earlier.zip").write_text("kept")
        with pytest.raises(ConfigError, match=r"dataset.name: 'own_data_broken' could not be downloaded and "
                                              r"prepared .*ConnectionError: the connection was reset"):
            _load(tmp_path, name="own_data_broken", data_dir=str(data_dir))
    finally:
        server.shutdown()
    assert sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")) == ["downloads", "downloads/earlier.zip"]


# ------------------------------------------------------------------ bad input: one line, exit 2


def _truncated(root):
    make_folder(root, per_class=3)
    f = root / "emu" / "001.png"
    f.write_bytes(f.read_bytes()[:200])


def _not_an_image(root):
    make_folder(root, per_class=3)
    (root / "dog" / "notes.png").write_text("not an image")


def _mixed_sizes(root):
    make_folder(root, per_class=3)
    _png(root / "cat" / "wide.png", np.zeros((32, 48, 3), np.uint8))


def _empty_class(root):
    make_folder(root, per_class=3)
    (root / "fox").mkdir()


def _npz(**arrays):
    def write(root):
        root.mkdir()
        np.savez(root / "d.npz", **arrays)
    return write


X = np.zeros((12, 4, 4), np.uint8)
Y = np.arange(12) % 3
BAD = {
    # id: (make the data under `root`, the dataset section, field, words)
    "missing_folder": (lambda root: None, {"folder": "data"}, "dataset.folder", "no such folder"),
    "empty_folder": (lambda root: root.mkdir(), {"folder": "data"}, "dataset.folder", "is empty"),
    "empty_class": (_empty_class, {"folder": "data"}, "dataset.folder", "class 'fox'"),
    "not_an_image": (_not_an_image, {"folder": "data"}, "dataset.folder", "notes.png: not a readable image"),
    "truncated_image": (_truncated, {"folder": "data"}, "dataset.folder", "001.png: unreadable or truncated"),
    "mixed_sizes": (_mixed_sizes, {"folder": "data"}, "dataset.image_size", "vary in size"),
    "labels_out_of_range": (_npz(x_train=X, y_train=Y, x_test=X, y_test=Y + 1), {"arrays": "data/d.npz"},
                            "dataset.arrays", "labels out of range"),
    "negative_label": (_npz(x_train=X, y_train=Y - 1), {"arrays": "data/d.npz"}, "dataset.arrays",
                       "labels out of range"),
    "missing_keys": (_npz(x_train=X, x_test=X), {"arrays": "data/d.npz"}, "dataset.arrays",
                     "missing y_train, y_test"),
    "name_and_folder": (lambda root: make_folder(root), {"name": "fashion_mnist", "folder": "data"},
                        "dataset.folder", "exactly one of"),
    "over_memory": (lambda root: make_folder(root), {"folder": "data", "max_memory_mb": 1,
                                                     "image_size": [512, 512]},
                    "dataset.max_memory_mb", "over the limit of 1 MB"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, dataset, field, words = BAD[case]
    make(tmp_path / "data")
    study = tmp_path / "study.yaml"  # the paths are relative to the study file's folder
    study.write_text(yaml.safe_dump({"name": "own", "dataset": dataset}))
    (work := tmp_path / "work").mkdir()
    code, out, err = run_cli(["study", study, "--workdir", work], capsys)
    assert code == 2, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert str(study) in lines[0] and field in lines[0] and words in lines[0], lines[0]
    assert list(work.iterdir()) == []


# ------------------------------------------------------------------ a whole study on your images


def test_a_study_on_a_folder_of_rgb_images(tmp_path, capsys):
    make_folder(tmp_path / "images" / "train", per_class=30)
    make_folder(tmp_path / "images" / "test", per_class=6, seed=1)
    study = tmp_path / "own.yaml"
    study.write_text(yaml.safe_dump({
        "name": "own", "dataset": {"folder": "images"},
        "teacher": {"widths": [64], "epochs": 40, "jitter": 1, "dropout": 0.0, "input_dropout": 0.0,
                    "batch_size": 16, "learning_rate": 0.003},
        "student": {"family": "mlp", "depth": 1}, "training": {"epochs": 1, "batch_size": 16, "jit_compile": False},
        "search": {"width": {"choices": [8, 16]}}, "n_trials": 2, "confirm": {"seeds": 0},
        "heartbeat": {"interval": 1, "grace_period": 3}, "exports": ["savedmodel"]}))
    (work := tmp_path / "work").mkdir()
    code, out, err = run_cli(["study", study, "--workdir", work], capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    client = mlflow_client(work)
    exp = client.get_experiment_by_name("own")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'study'")
    p = parent.data.params
    assert p["dataset_kind"] == "folder" and p["class_names"] == "cat,dog,emu" and p["image_shape"] == "32x32x3"
    assert p["test_split"] == "test" and parent.data.tags["data.test_split"] == "test"
    classes = client.download_artifacts(parent.info.run_id, "classes.json", str(tmp_path))
    assert json.loads(Path(classes).read_text()) == {"0": "cat", "1": "dog", "2": "emu"}
    # the class names travel with the exports: the SavedModel's assets.extra, the registered model's
    # version tag and its MLmodel metadata
    shipped = work / "exports" / "own-champion" / "assets.extra" / "class_names.json"
    assert json.loads(shipped.read_text()) == CLASSES
    version = client.get_model_version_by_alias("own-student", "champion")
    assert json.loads(version.tags["class_names"]) == CLASSES
    import mlflow

    assert mlflow.models.get_model_info(f"models:/own-student/{version.version}").metadata == {"class_names": CLASSES}
