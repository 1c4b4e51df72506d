"""A user's teacher, read faithfully (issue 28): softmax outputs computed in bfloat16 recognised,
a SavedModel signature taking uint8 fed uint8, a Lambda layer and an unresolvable alias refused in
a line that says what to do, and a teacher whose classes are in another order named. The teachers
are built, not trained: their logits are a function of the image's mean brightness, which tells
the class of the images written here."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from harness import config
from harness.config import ConfigError, DatasetConfig
from harness.data import sources
from harness.teacher import trained

K = 4


def brightness_teacher(order=None, dtype=None, softmax=False, sharp=20.0):
    """Logits -sharp*(m - c_k)^2 (+ a term common to every class) of the mean brightness m in
    [0, 1]; class k's images centre on c_k. `order[j]`: the data class output j stands for."""
    centers = (60 * np.arange(K) + 30) / 255.0
    order = list(range(K)) if order is None else order
    c = centers[order]
    before = keras.config.dtype_policy()
    if dtype:
        keras.config.set_dtype_policy(dtype)
    try:
        x = keras.Input((8, 8, 1))
        m = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(x))
        dense = keras.layers.Dense(K, name="logits")
        z = dense(m)
        dense.set_weights([(2 * sharp * c)[None, :].astype("float32"), (-sharp * c ** 2).astype("float32")])
        out = keras.layers.Softmax()(z) if softmax else z
        return keras.Model(x, out)
    finally:
        keras.config.set_dtype_policy(before)


@pytest.fixture(scope="module")
def brightness_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("brightness")
    rng = np.random.default_rng(0)
    for k in range(K):
        for i in range(40):
            img = (60 * k + rng.integers(0, 60, (8, 8))).astype(np.uint8)
            (d / "images" / f"class{k}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / "images" / f"class{k}" / f"{i:02d}.png")
    splits = sources.load_splits(DatasetConfig(folder=str(d / "images"), validation_fraction=0.25), seed=0)
    return d, splits


def _load(d, splits, tmp_path, **teacher):
    cfg = config.parse({"name": "t", "dataset": {"folder": str(d / "images")}, "teacher": teacher},
                       str(d / "t.yaml"))
    return trained.load_or_train(cfg, splits, tmp_path / "cache")


# ---------------------------------------------------------------- 3. probabilities in bfloat16


def test_a_bfloat16_softmax_teacher_is_read_as_probabilities(brightness_data, tmp_path):
    d, splits = brightness_data
    model = brightness_teacher(dtype="mixed_bfloat16", softmax=True)
    model.save(d / "bf16.keras")
    probs = np.asarray(model(splits.transfer.images.astype("float32")), np.float32)
    assert np.abs(probs.sum(-1) - 1).max() > 1e-3  # as the issue found: sums off by more than float32's slack
    t = _load(d, splits, tmp_path, model="bf16.keras")
    assert t.outputs == ["probabilities"]
    soft = tf.nn.softmax(t.transfer_logits / 4.0).numpy()
    want = tf.nn.softmax(np.log(probs) / 4.0).numpy()
    np.testing.assert_allclose(soft, want, atol=0.02)  # the soft targets at T = 4 of the teacher's distribution
    assert t.transfer_logits.dtype == np.float32
    explicit = _load(d, splits, tmp_path / "2", model="bf16.keras", outputs="probabilities")  # accepted
    np.testing.assert_allclose(explicit.transfer_logits, t.transfer_logits)


# ---------------------------------------------------------------- 6. a SavedModel taking uint8


def test_a_savedmodel_whose_signature_takes_uint8_is_fed_uint8(brightness_data, tmp_path):
    d, splits = brightness_data
    model = brightness_teacher()

    class Serve(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8)])
        def serve(self, x):
            return self.m(tf.cast(x, tf.float32))

    mod = Serve(model)
    tf.saved_model.save(mod, str(d / "uint8_model"), signatures={"serving_default": mod.serve})
    t = _load(d, splits, tmp_path, model="uint8_model")
    assert t.val_accuracy == 1.0
    np.testing.assert_allclose(t.transfer_logits, model(splits.transfer.images.astype("float32")), atol=1e-5)


# ---------------------------------------------------------------- 11. Lambda, 12. an unresolvable alias


def test_a_lambda_layer_is_one_line_saying_what_to_do(brightness_data, tmp_path):
    d, splits = brightness_data
    x = keras.Input((8, 8, 1))
    y = keras.layers.Dense(K)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t / 255.0)(x)))
    keras.Model(x, y).save(d / "lambda.keras")
    with pytest.raises(ConfigError) as e:
        _load(d, splits, tmp_path, model="lambda.keras")
    msg = str(e.value)
    assert "\n" not in msg and "teacher.model" in msg and "lambda.keras" in msg
    assert "Lambda layer" in msg and "re-save the model without it" in msg and "model.export" in msg


def test_an_unresolvable_alias_names_the_store_as_given(brightness_data, tmp_path):
    from mlflow.tracking import MlflowClient

    from harness import tracking

    d, splits = brightness_data
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.setup(uri, tmp_path, "any")  # a store that exists, without the model
    MlflowClient(tracking.internal_uri(uri)).create_registered_model("nobody")
    cfg = config.parse({"name": "t", "dataset": {"folder": str(d / "images")},
                        "teacher": {"model": "models:/nobody@prod"}}, str(d / "t.yaml"))
    with pytest.raises(ConfigError, match="does not resolve in the tracking store") as e:
        trained.load_or_train(cfg, splits, tmp_path / "cache", uri)
    assert "?timeout" not in str(e.value) and uri in str(e.value), str(e.value)


# ---------------------------------------------------------------- 14. classes in another order


def test_a_teacher_whose_classes_are_in_another_order_is_named(brightness_data, tmp_path):
    d, splits = brightness_data
    brightness_teacher(order=[0, 1, 3, 2]).save(d / "swapped.keras")  # two classes keep their place
    with pytest.raises(ConfigError) as e:
        _load(d, splits, tmp_path, model="swapped.keras")
    msg = str(e.value)
    assert "\n" not in msg and "teacher.model" in msg and "another order" in msg
    assert "the data's order is [class0, class1, class2, class3]" in msg
    assert "the teacher's seems to be [class0, class1, class3, class2]" in msg
    assert "as it is, 1.00 with its outputs reordered; 2 of 4 classes move" in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/manifest.json"))
    brightness_teacher().save(d / "right.keras")
    ok = _load(d, splits, tmp_path, model="right.keras")
    assert ok.warnings == [] and ok.val_accuracy == 1.0


def test_a_near_miss_is_a_warning_kept_for_the_summary():
    from harness.teacher import class_order

    labels = np.repeat(np.arange(10), 10)
    predicted = labels.copy()
    predicted[(labels == 0)] = 1  # class 0 always read as 1, class 1 as 0 six times in ten
    predicted[np.flatnonzero(labels == 1)[:6]] = 0
    logits = np.eye(10, dtype=np.float32)[predicted]
    names = [str(i) for i in range(10)]
    note = class_order.check("s.yaml", "teacher.model", "the teacher t.keras", logits, labels, names)
    assert note is not None and "0.84 as it is, 0.96 with its outputs reordered" in note
    assert "another order" in note and "0, 1" in note
    assert class_order.check("s.yaml", "teacher.model", "t", np.eye(10)[labels], labels, list("abcdefghij")) is None


def test_the_summary_repeats_the_teachers_warnings(monkeypatch):
    from harness.report import tables

    monkeypatch.setattr(tables, "browse_line", lambda *a, **k: "browse")
    monkeypatch.setattr(tables.mlflow, "get_run", lambda run_id: types.SimpleNamespace(
        info=types.SimpleNamespace(experiment_id="0")))
    teacher = types.SimpleNamespace(params=10, val_accuracy=0.9, test_accuracy=0.9,
                                    warnings=["the teacher t.keras may number its classes in another order"])
    result = types.SimpleNamespace(study=types.SimpleNamespace(trials=[]), champion=None, seconds=60,
                                   search_seconds=30, confirm_seconds=0, new_trials=0, teacher=teacher,
                                   confirmed=[], exports=None, parent_run_id="r", contention={})
    cfg = config.parse({"name": "s"}, "s.yaml")
    text = tables.summary(cfg, result)
    assert "warning: the teacher t.keras may number its classes in another order" in text


def test_probabilities_tolerance_follows_the_dtype():
    from harness.teacher import signature

    assert signature.sum_tolerance("float32") == 1e-3
    assert signature.sum_tolerance("bfloat16") > 0.01 > signature.sum_tolerance("float16") > 1e-3
