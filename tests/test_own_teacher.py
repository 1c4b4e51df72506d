"""A teacher the harness did not train (`teacher.model`): trained here the way a user would (plain
Keras, a `Rescaling` inside, a final softmax), saved as .keras, as a SavedModel and in the MLflow
registry; loaded, checked on the data, cached by content, distilled. And the guards of a teacher
the harness trains: divergence and chance level stop the study, nothing cached."""

import os
import shutil

import keras
import numpy as np
import pytest
import yaml
from helpers import SMOKE, run_cli, write_study

from harness import config
from harness.data.evaluate import softmax
from harness.teacher import loaded, trained

SMALL = {"dataset.limit": 1000, "n_trials": 1, "training.epochs": 1, "search.width": {"choices": [16]},
         "confirm.seeds": 0}


def _user_model(outputs=10, shape=(28, 28, 1), zeros=False, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input(shape)
    h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(x))
    h = keras.layers.Dense(64, activation="relu")(h)
    z = keras.layers.Dense(outputs, kernel_initializer="zeros" if zeros else "glorot_uniform", name="logits")(h)
    return keras.Model(x, keras.layers.Softmax()(z))


@pytest.fixture(scope="module")
def user_teacher(tmp_path_factory, small_splits):
    """A teacher trained outside the harness (1 epoch), saved three ways, and its logits twin."""
    d = tmp_path_factory.mktemp("user_teacher")
    model = _user_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(small_splits.transfer.images.astype("float32"), small_splits.transfer.labels, epochs=1,
              batch_size=64, verbose=0)
    model.save(d / "teacher.keras")
    model.export(str(d / "teacher_savedmodel"), verbose=False)
    keras.Model(model.input, model.get_layer("logits").output).save(d / "teacher_logits.keras")
    return model, d


def _cfg(tmp_path, **teacher):
    """A study file beside the models (relative paths resolve against its folder)."""
    return config.parse({"name": "own", "dataset": {"limit": 2000}, "teacher": teacher},
                        str(tmp_path / "own.yaml"))


@pytest.mark.parametrize("kind", ["keras", "savedmodel", "registry"])
def test_a_users_teacher_is_distilled_and_its_champion_exported(kind, user_teacher, tmp_path):
    import mlflow

    from harness import study
    model, d = user_teacher
    workdir = tmp_path / "work"
    workdir.mkdir()
    ref = {"keras": str(d / "teacher.keras"), "savedmodel": str(d / "teacher_savedmodel")}.get(kind)
    if kind == "registry":  # a model someone registered in the study's store (artifacts in the workdir)
        from harness import tracking
        exp = tracking.setup(f"sqlite:///{workdir / 'mlflow.db'}", workdir, "someone")
        with mlflow.start_run(experiment_id=exp):
            mlflow.keras.log_model(model, name="model", registered_model_name="user-teacher")
        mlflow.MlflowClient().set_registered_model_alias("user-teacher", "prod", "1")
        ref = "models:/user-teacher@prod"
    cfg = config.load(write_study(tmp_path, name=f"own-{kind}", **SMALL, teacher={"model": ref}))
    # The export takes the student alone, whatever the teacher's kind: exported once, from the
    # registered teacher's study (a fresh-process check costs some 6 s a case)
    result = study.run(cfg, workdir, export=kind == "registry")
    assert not result.teacher.trained and result.teacher.outputs == ["probabilities"]
    assert result.teacher.val_accuracy > 0.5
    if kind == "registry":
        assert "refused" not in result.exports["savedmodel"], result.exports
        assert os.path.isdir(result.exports["savedmodel"]["path"])
    run = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name(cfg.name).experiment_id],
                                            filter_string="tags.`harness.role` = 'teacher'")[0]
    assert run.data.metrics["val_accuracy"] == pytest.approx(result.teacher.val_accuracy)
    assert run.data.params["teacher_outputs_found"] == "probabilities"


def test_a_softmax_teacher_gives_its_logits_twins_soft_targets(user_teacher, small_splits, tmp_path):
    _, d = user_teacher
    probs = trained.load_or_train(_cfg(d, model="teacher.keras"), small_splits, tmp_path)
    logits = trained.load_or_train(_cfg(d, model="teacher_logits.keras"), small_splits, tmp_path)
    assert probs.outputs == ["probabilities"] and logits.outputs == ["logits"]
    assert probs.key != logits.key
    for t in (1.0, 4.0, 20.0):
        np.testing.assert_allclose(softmax(probs.transfer_logits / t), softmax(logits.transfer_logits / t), atol=1e-5)
    # Declared: the same; declared wrongly: refused in one line.
    declared = trained.load_or_train(_cfg(d, model="teacher.keras", outputs="probabilities"), small_splits, tmp_path)
    np.testing.assert_allclose(declared.transfer_logits, probs.transfer_logits, atol=1e-6)
    with pytest.raises(config.ConfigError, match="teacher.outputs: probabilities, but"):
        trained.load_or_train(_cfg(d, model="teacher_logits.keras", outputs="probabilities"), small_splits, tmp_path)


def test_an_ensemble_of_loaded_teachers_is_averaged_as_a_trained_one(user_teacher, small_splits, tmp_path):
    _, d = user_teacher
    t = trained.load_or_train(_cfg(d, model=["teacher.keras", "teacher_savedmodel"]), small_splits, tmp_path)
    assert t.transfer_logits.shape == (len(small_splits.transfer), 2, 10)
    np.testing.assert_allclose(t.transfer_logits[:, 0], t.transfer_logits[:, 1], atol=1e-4)  # the same model twice


def test_a_changed_model_file_misses_the_cache(user_teacher, small_splits, tmp_path):
    _, d = user_teacher
    mine = tmp_path / "models"
    shutil.copytree(d, mine)
    cfg = _cfg(mine, model="teacher.keras")
    first = trained.load_or_train(cfg, small_splits, tmp_path / "cache")
    assert not first.from_cache and trained.load_or_train(cfg, small_splits, tmp_path / "cache").from_cache
    other = _user_model(seed=1)  # another model under the same name
    other.compile("adam", "sparse_categorical_crossentropy")
    other.fit(small_splits.transfer.images.astype("float32"), small_splits.transfer.labels, batch_size=64, verbose=0)
    other.save(mine / "teacher.keras")
    again = trained.load_or_train(cfg, small_splits, tmp_path / "cache")
    assert again.key != first.key and not again.from_cache
    assert not np.allclose(again.transfer_logits, first.transfer_logits)
    # A folder: any file's content counts.
    sm = _cfg(mine, model="teacher_savedmodel")
    key = trained.cache_key(sm, "d")
    (mine / "teacher_savedmodel" / "assets" / "note.txt").write_text("changed")
    assert trained.cache_key(sm, "d") != key
    # Moving the files changes nothing: the key holds what they are, not where.
    shutil.copytree(mine, tmp_path / "moved")
    assert trained.cache_key(_cfg(tmp_path / "moved", model="teacher_savedmodel"), "d") == trained.cache_key(sm, "d")


def test_the_trained_teacher_is_registered_and_loads_by_latest(small_splits, tmp_path):
    from harness import tracking
    cfg = config.parse({"name": "reg", "dataset": {"limit": 2000},
                        "teacher": {"widths": [32], "epochs": 1, "dropout": 0.0, "input_dropout": 0.0,
                                    "jit_compile": False}})
    t = trained.load_or_train(cfg, small_splits, tmp_path / "cache")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.setup(uri, tmp_path, cfg.name)
    with tracking.start("study", "reg", experiment_id=exp) as parent:
        trained.log_teacher(t, cfg, exp, parent.info.run_id, small_splits.validation.images[:2])
    other = _cfg(tmp_path, model="models:/reg-teacher@latest")
    back = trained.load_or_train(other, small_splits, tmp_path / "cache", uri)
    assert back.outputs == ["logits"] and back.key != t.key
    np.testing.assert_allclose(back.transfer_logits, t.transfer_logits, atol=1e-5)
    assert back.val_accuracy == pytest.approx(t.val_accuracy)


def _trained_cfg(**teacher):
    return config.parse({"name": "guard", "dataset": {"limit": 2000},
                         "teacher": {"widths": [32], "epochs": 1, "dropout": 0.0, "input_dropout": 0.0,
                                     "jit_compile": False, **teacher}}, "guard.yaml")


@pytest.mark.parametrize("teacher, words", [
    ({"optimizer": "sgd", "learning_rate": 1e30}, "diverged: its training loss became nan"),
    ({"learning_rate": 1e-12}, "near chance"),
])
def test_a_trained_teacher_that_diverges_or_learns_nothing_stops_and_is_not_cached(
        teacher, words, small_splits, tmp_path):
    with pytest.raises(config.ConfigError, match=words) as e:
        trained.load_or_train(_trained_cfg(**teacher), small_splits, tmp_path)
    assert str(e.value).startswith("guard.yaml: teacher: ") and "nothing cached" in str(e.value)
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]  # no entry


def test_a_teacher_no_better_than_the_first_twin_is_flagged(tmp_path, caplog):
    import types

    import mlflow

    from harness import tracking
    from harness.training import twin
    exp = tracking.setup(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, "flag")
    for teacher_acc, flagged in ((0.70, True), (0.90, False)):
        with tracking.start("study", "s", experiment_id=exp) as parent:
            ctx = types.SimpleNamespace(parent_run_id=parent.info.run_id,
                                        teacher=types.SimpleNamespace(val_accuracy=teacher_acc, warnings=[]))
            twin._check_teacher(ctx, 16, 0.75)
            twin._check_teacher(ctx, 32, 0.95)  # only the first twin counts
        tags = mlflow.MlflowClient().get_run(parent.info.run_id).data.tags
        assert ("harness.teacher_warning" in tags) == flagged
    assert "no better than the scratch twin at width 16" in caplog.text


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_models")
    (d / "not_a_model.keras").write_bytes(b"this is not a zip file")
    _user_model().save(d / "good.keras")
    shutil.copy(d / "good.keras", d / "model.h5")
    _user_model(outputs=5).save(d / "five_classes.keras")
    _user_model(shape=(32, 32, 3)).save(d / "rgb32.keras")
    _user_model(shape=(32, 32, 1)).save(d / "gray32.keras")
    _user_model(zeros=True).save(d / "untrained.keras")  # every row the same: always class 0
    return d


BAD = {
    # id: (teacher section, field, words in the message)
    "missing_file": ({"model": "nowhere.keras"}, "teacher.model", "no such file or folder"),
    "not_a_model": ({"model": "not_a_model.keras"}, "teacher.model", "not a model Keras can load"),
    "not_keras_suffix": ({"model": "model.h5"}, "teacher.model", "not a .keras file"),
    "registry_unresolved": ({"model": "models:/nobody@prod"}, "teacher.model", "does not resolve"),
    "unknown_scheme": ({"model": "s3://bucket/teacher.keras"}, "teacher.model", "unsupported URI"),
    "class_count": ({"model": "five_classes.keras"}, "teacher.model", "the data have 10 classes"),
    "input_channels": ({"model": "rgb32.keras"}, "teacher.model", "expects input of shape [32, 32, 3], gets [28, 28, 1]"),
    "input_size": ({"model": "gray32.keras"}, "teacher.model", "set teacher.input.size"),
    "near_chance": ({"model": "untrained.keras"}, "teacher.model", "near chance"),
    "unknown_outputs": ({"model": "good.keras", "outputs": "scores"}, "teacher.outputs", "unknown value 'scores'"),
    "outputs_without_model": ({"outputs": "logits"}, "teacher.outputs", "only with teacher.model"),
    "endpoint_missing": ({"model": "good.keras", "endpoint": ""}, "teacher.endpoint", "must not be empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_teacher_that_does_not_fit_is_one_line(case, bad_models, tmp_path, capsys):
    teacher, field, words = BAD[case]
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["teacher"], cfg["dataset"]["limit"] = teacher, 1000
    study_file = bad_models / f"{case}.yaml"  # beside the models: relative paths resolve there
    study_file.write_text(yaml.safe_dump(cfg))
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, out, err = run_cli(["study", study_file, "--workdir", workdir], capsys)
    assert code == 2, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err + out, err
    assert str(study_file) in lines[0] and field in lines[0] and words in lines[0], lines[0]
    assert list(workdir.iterdir()) == [], "nothing may be written to the working directory"


def test_a_teacher_of_another_size_is_resized_and_rescaled(bad_models, small_splits):
    cfg = _cfg(bad_models, model="gray32.keras", input={"scale": 2.0, "offset": -1.0, "size": [32, 32]})
    raw = keras.saving.load_model(bad_models / "gray32.keras")
    model, _ = loaded._adapt(cfg, raw, "gray32.keras", small_splits, "teacher_0")
    x = small_splits.validation.images[:4].astype("float32")
    want = raw(keras.ops.image.resize(x, (32, 32)) * 2.0 - 1.0)  # what the user's model gets: resized, rescaled
    np.testing.assert_allclose(model(x), want, atol=1e-5)
