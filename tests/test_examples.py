"""examples/own_model (distill your own model): its three scripts on a tiny subset, and its study
file read by the harness as `harness study` would (the folder, the softmax teacher found by
`outputs: auto`, the builder's checks), without running the study."""

import importlib.util
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from harness import config
from harness.data import sources
from harness.distill import builder
from harness.teacher import loaded

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_model"


def _module(name):
    spec = importlib.util.spec_from_file_location(f"own_model_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A copy of the example folder whose data/ holds 600 train and 100 test PNGs written by
    write_pngs.py, and a teacher trained on them by train_teacher.py."""
    root = tmp_path_factory.mktemp("own_model")
    for name in ("own_model.yaml", "students.py"):
        shutil.copy(EXAMPLE / name, root / name)
    pngs = _module("write_pngs")
    data = root / "data" / "fashion_mnist_png"
    names = None
    for split, limit in (("train", 600), ("test", 100)):
        x, y, labels = pngs.load_fashion_mnist(split, limit)
        names = [pngs.safe_name(n) for n in labels]
        assert pngs.write_split(data, split, x, y, names) == limit
    accuracy = _module("train_teacher").train_teacher(data, root / "data" / "teacher.keras", epochs=3,
                                                      batch_size=32, verbose=0)
    return root, names, accuracy


def test_pngs_are_the_tfds_images_in_class_folders(example):
    root, names, _ = example
    pngs = _module("write_pngs")
    assert "T-shirt_top" in names and all("/" not in n for n in names)
    x, y, _ = pngs.load_fashion_mnist("test", 100)
    i = 7
    stored = keras.utils.load_img(root / "data" / "fashion_mnist_png" / "test" / names[y[i]] / f"{i:05d}.png",
                                  color_mode="grayscale")
    np.testing.assert_array_equal(np.asarray(stored), x[i][..., 0])
    assert sum(1 for _ in (root / "data" / "fashion_mnist_png" / "train").rglob("*.png")) == 600


def test_teacher_is_plain_keras_with_rescaling_and_softmax(example):
    root, _, accuracy = example
    assert 0.3 < accuracy <= 1.0  # 3 epochs of 600 images: well above chance (0.1)
    model = keras.saving.load_model(root / "data" / "teacher.keras", safe_mode=True, compile=False)
    assert isinstance(model.layers[0], keras.layers.Rescaling)
    probs = model.predict(np.full((2, 28, 28, 1), 255.0, np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    source = (EXAMPLE / "train_teacher.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+harness", source, re.M)  # what a user writes: no harness imports


def test_student_builder_grows_with_width_and_outputs_logits():
    students = _module("students")
    sizes = [students.small_cnn(w, (28, 28, 1), 10).count_params() for w in (4, 8, 16)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    out = students.small_cnn(4, (28, 28, 1), 10)(np.full((3, 28, 28, 1), 200.0, np.float32))
    assert out.shape == (3, 10) and not np.allclose(np.sum(out, axis=-1), 1.0)


def test_study_file_loads_the_folder_the_softmax_teacher_and_the_builder(example, tmp_path):
    root, names, _ = example
    cfg = config.load(root / "own_model.yaml")
    assert cfg.teacher.outputs == "auto" and cfg.student.builder == "students:small_cnn"
    assert cfg.confirm.seeds == 3 and set(cfg.exports) == {"savedmodel", "tflite", "tflite-int8"}
    splits = sources.load_splits(cfg.dataset, cfg.seed)
    assert splits.transfer.images.shape[1:] == (28, 28, 1) and splits.num_classes == 10
    assert len(splits.test.labels) == 100  # test/ is the test split, not a slice of train
    builder.check(cfg.student.builder, cfg.source, cfg.search.width.choices, (28, 28, 1), 10)
    teacher = loaded.load(cfg, splits, tmp_path / "teacher_cache", "k")
    assert teacher.outputs == ["probabilities"]  # outputs: auto found the final softmax
    assert teacher.val_accuracy > 0.19  # the harness's near-chance guard passed


def test_the_real_study_file_parses():
    cfg = config.load(EXAMPLE / "own_model.yaml")
    assert Path(cfg.dataset.folder) == EXAMPLE / "data" / "fashion_mnist_png"
    assert 8 <= cfg.n_trials <= 16 and cfg.training.epochs <= 10  # sized for 10-15 minutes on 2 cores
