"""FitNets hints: the hint loss against NumPy, the adapter and the student training together, the
hint layers by default and by name, and the one-line errors of a layer the models cannot give."""

import keras
import numpy as np
import pytest

from harness import config
from harness.distill import models
from harness.distill.distiller import Distiller, make_optimizer
from harness.distill.methods import Method, fitnets


def _cnn(widths, seed, name):
    keras.utils.set_random_seed(seed)
    return models.cnn((12, 12, 1), 10, widths, head=16, seed=seed, name=name)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 12, 12, 1)).astype(np.float32)
    return x, rng.integers(0, 10, 64)


def test_hint_loss_matches_numpy():
    rng = np.random.default_rng(1)
    adapted, teacher = rng.normal(size=(2, 8, 3, 3, 5)).astype(np.float32)
    want = np.mean((adapted.astype(np.float64) - teacher.astype(np.float64)) ** 2)
    np.testing.assert_allclose(float(fitnets.hint_loss(adapted, teacher)), want, rtol=1e-6)
    labels = rng.integers(0, 10, 8)
    s, t = rng.normal(size=(2, 8, 10)).astype(np.float32)
    kd = [float(v) for v in Method("kd").spec.loss(labels, s, t, 3.0, 0.4, {})]
    got = [float(v) for v in fitnets.FitNets.loss(labels, s, t, 3.0, 0.4, {"fitnets_hint_weight": 2.5},
                                                  hints=(adapted, teacher))]
    np.testing.assert_allclose(got, [kd[0] + 2.5 * want, kd[1], kd[2]], rtol=1e-5)


def test_default_layers_are_the_last_feature_maps():
    assert fitnets.default_layer(_cnn([4, 8], 0, "s")) == "pool_1"
    assert fitnets.default_layer(models.mlp((12, 12, 1), 10, [16, 8], name="m")) == "hidden_1"


def test_the_adapter_trains_with_the_student_and_the_teacher_stays(data):
    x, y = data
    student, teacher = _cnn([4, 4], 1, "student"), _cnn([6, 12], 2, "teacher")
    teacher_before = [w.numpy().copy() for w in teacher.weights]
    m = Method("fitnets", 4.0, 0.5, fitnets_hint_weight=1.0, fitnets_teacher_layer="pool_0")
    d = Distiller(student, teacher, temperature=4.0, alpha=0.5, method=m)
    assert d.hint_adapter.layers[-1].kernel.shape == (1, 1, 4, 6)  # 1x1 conv; student 3x3 resized to 6x6
    start = [w.numpy().copy() for w in d.hint_adapter.weights]
    d.compile(optimizer=make_optimizer("adam", 1e-2), jit_compile=False)
    assert {id(v) for v in d.hint_adapter.trainable_variables} <= {id(v) for v in d.trainable_variables}
    d.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(start, d.hint_adapter.weights))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(teacher_before, teacher.weights))
    d.set_method(m)  # a compiled Distiller re-armed for the next run: the adapter starts afresh
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(start, d.hint_adapter.weights))


def test_the_hint_term_changes_the_students_training(data):
    x, y = data

    def trained(weight):
        student, teacher = _cnn([4, 4], 1, "student"), _cnn([6, 12], 2, "teacher")
        d = Distiller(student, teacher, method=Method("fitnets", 4.0, 0.5, fitnets_hint_weight=weight))
        d.compile(optimizer=make_optimizer("sgd", 1e-2), jit_compile=False)
        d.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        return student.weights[1].numpy()

    assert not np.allclose(trained(0.0), trained(5.0))


@pytest.mark.parametrize("student_layer, teacher_layer, field, words", [
    ("nope", None, "student_layer", "has no layer 'nope'; its layers: "),
    (None, "missing", "teacher_layer", "has no layer 'missing'"),
])
def test_a_layer_that_does_not_exist_names_the_layers(student_layer, teacher_layer, field, words):
    own = {"fitnets_student_layer": student_layer, "fitnets_teacher_layer": teacher_layer}
    with pytest.raises(fitnets.HintError, match=words) as e:
        fitnets.FitNets._plan(_cnn([4, 4], 1, "s"), [_cnn([6, 12], 2, "t")], own)
    assert e.value.field == f"distillation.fitnets.{field}"
    assert "\n" not in str(e.value)


def test_an_mlp_student_cannot_regress_a_cnn_feature_map():
    mlp = models.mlp((12, 12, 1), 10, [16], name="m")
    with pytest.raises(fitnets.HintError, match="no 1x1 convolution or dense adapter maps"):
        fitnets.FitNets._plan(mlp, [_cnn([6, 12], 2, "t")], {})
    fitnets.FitNets._plan(_cnn([4, 4], 1, "s"), [models.mlp((12, 12, 1), 10, [16], name="t")], {})  # flattened


def test_a_savedmodel_teacher_has_no_layers_to_read(tmp_path):
    t = _cnn([6, 12], 2, "t")
    t.export(str(tmp_path / "sm"), verbose=False)
    x = keras.Input((12, 12, 1))
    wrapped = keras.Model(x, keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="serve")(x))
    with pytest.raises(fitnets.HintError, match="SavedModel"):
        fitnets.FitNets._plan(_cnn([4, 4], 1, "s"), [wrapped], {})


def test_a_loaded_keras_teacher_s_layer_is_read_through_its_wrapper(tmp_path):
    t = _cnn([6, 12], 2, "t")
    x = keras.Input((12, 12, 1))
    wrapper = keras.Model(x, keras.ops.cast(t(keras.layers.Rescaling(1.0, name="rescale")(x)), "float32"))
    model, name = fitnets.hint_model(wrapper, "conv_1", "f", "teacher")
    images = np.random.default_rng(0).uniform(0, 255, (2, 12, 12, 1)).astype(np.float32)
    direct = keras.Model(t.inputs, t.get_layer("conv_1").output)(images)
    np.testing.assert_allclose(model(images), direct, rtol=1e-6)


def test_the_study_file_s_layer_errors_are_config_errors(tmp_path):
    cfg = config.parse({"name": "f", "distillation": {"method": "fitnets", "fitnets": {"student_layer": "x"}},
                        "student": {"family": "cnn"}}, "study.yaml")
    with pytest.raises(config.ConfigError, match="study.yaml: distillation.fitnets.student_layer: the student"):
        fitnets.FitNets.check_study(cfg, lambda: _cnn([4, 4], 1, "s"), lambda: [_cnn([6, 12], 2, "t")])
    with pytest.raises(config.ConfigError, match="fitnets.hint_weight: must be 0 or more"):
        config.parse({"name": "f", "distillation": {"method": "fitnets", "fitnets": {"hint_weight": -1}}}, "s.yaml")


def test_a_registered_teacher_s_layers_are_checked_before_anything_is_written(tmp_path):
    """A `models:/` teacher is read from the registry for the check (not left to the Distiller, mid-run)."""
    import mlflow

    from harness.teacher import loaded

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        mlflow.keras.log_model(_cnn([6, 12], 2, "t"), name="model", registered_model_name="hint-teacher")
    mlflow.MlflowClient().set_registered_model_alias("hint-teacher", "prod", "1")

    def study(teacher_layer):
        return config.parse({"name": "f", "teacher": {"model": "models:/hint-teacher@prod"},
                             "student": {"family": "cnn"},
                             "distillation": {"method": "fitnets", "fitnets": {"teacher_layer": teacher_layer}}},
                            str(tmp_path / "study.yaml"))

    def check(cfg):
        fitnets.FitNets.check_study(cfg, lambda: _cnn([4, 4], 1, "s"), lambda: loaded.layered(cfg))

    check(study("pool_1"))  # a layer the registered model has
    with pytest.raises(config.ConfigError, match="distillation.fitnets.teacher_layer: the teacher has no layer 'nope'"):
        check(study("nope"))
