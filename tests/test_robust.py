"""Robustness and deployment faults found by trying public bug reports (issue 21): each test is one
fault's kind, and each failed on the code before its fix."""

import copy
import json
import math

import numpy as np
import pytest
import yaml
from helpers import SMOKE, run_cli

from harness import config

BASE = yaml.safe_load(SMOKE.read_text())


def _with(changes: dict) -> dict:
    """The smoke study file with dotted fields set (`{"student.depth": 3}`)."""
    cfg = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def _write(tmp_path, data, name="smoke.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


# ------------------------------------------------ fault 2: the study's fingerprint


def test_the_fingerprint_holds_everything_a_trial_trains_with():
    base = config.parse(BASE, "smoke.yaml")
    fp = config.study_fingerprint(base.to_dict())
    for field_name in ("seed", "dataset.name", "dataset.limit", "student.depth", "student.family",
                       "student.augment.jitter", "training.learning_rate", "training.epochs", "training.precision",
                       "transfer.fraction", "transfer.omit_classes", "distillation.teacher", "teacher.widths",
                       "search.width.choices", "objectives", "max_params"):
        assert field_name in fp, field_name
    for speed_only in ("training.jit_compile", "training.steps_per_execution", "n_trials", "confirm.seeds"):
        assert speed_only not in fp
    changes = {"student.depth": 3, "training.learning_rate": 0.01, "training.optimizer": "sgd",
               "transfer.fraction": 0.5, "distillation.teacher": "online", "dataset.limit": 2000,
               "student.dropout": 0.1, "teacher.epochs": 4}
    for path, value in changes.items():
        other = config.parse(_with({path: value}), "other.yaml")
        assert other.search_space_fingerprint() != base.search_space_fingerprint(), path
        (diff,) = config.fingerprint_differences(fp, config.study_fingerprint(other.to_dict()))
        assert diff[0] == path
    faster = config.parse(_with({"training.steps_per_execution": 1, "n_trials": 9}), "other.yaml")
    assert faster.search_space_fingerprint() == base.search_space_fingerprint()


def _stored_smoke(tmp_path):
    from harness.search import stores

    workdir = tmp_path / "work"
    workdir.mkdir()
    ws = stores.Workspace.resolve(workdir)
    stores.create_study(config.load(SMOKE), ws)  # study 'smoke' made with the original file
    return workdir, ws


@pytest.mark.parametrize("extra", [{}, {"max_params": 27000}], ids=["front", "max_params"])
def test_a_study_whose_student_changed_is_refused_naming_the_field(tmp_path, capsys, extra):
    import optuna

    from harness.search import stores

    workdir, ws = _stored_smoke(tmp_path)
    if extra:  # the stored study had max_params too: only the depth differs
        st = optuna.load_study(study_name="smoke", storage=ws.storage)
        cfg0 = config.parse(_with(extra), str(SMOKE))
        st.set_user_attr("fingerprint", config.study_fingerprint(cfg0.to_dict()))
    changed = _write(tmp_path, _with({"student.depth": 3, **extra}))
    with pytest.raises(stores.StudyError) as e:
        stores.check_compatible(config.load(changed), ws)
    assert f"student.depth: 2 in the stored study, 3 in {changed}" in str(e.value)
    before = sorted(p.name for p in workdir.iterdir())
    code, _, err = run_cli(["study", changed, "--workdir", workdir], capsys)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:")
    assert "student.depth: 2 in the stored study, 3 in" in line and "name:" in line and "--workdir" in line
    assert sorted(p.name for p in workdir.iterdir()) == before  # no mlflow.db, no caches, no exports
    assert optuna.load_study(study_name="smoke", storage=ws.storage).trials == []


def test_a_study_stored_before_the_fingerprint_is_checked_through_its_stored_config(tmp_path):
    """An older study holds `search_space` (the old hash) and `config` (the file it was made with,
    without fields added since): it resumes with the same file, and is refused with another student."""
    import optuna

    from harness.search import stores

    _, ws = _stored_smoke(tmp_path)
    st = optuna.load_study(study_name="smoke", storage=ws.storage)
    old_config = config.load(SMOKE).to_dict()
    del old_config["training"]["precision"]  # a field added after the study was stored
    st._storage.set_study_user_attr(st._study_id, "config", old_config)
    st._storage.set_study_user_attr(st._study_id, "search_space", "0123456789abcdef")
    st._storage.set_study_user_attr(st._study_id, "fingerprint", None)  # not a dict: as if absent
    stores.check_compatible(config.load(SMOKE), ws)  # same file: resumes
    changed = _write(tmp_path, _with({"student.depth": 3}))
    with pytest.raises(stores.StudyError, match="student.depth: 2 in the stored study"):
        stores.check_compatible(config.load(changed), ws)
    stores.create_study(config.load(SMOKE), ws)  # resuming stores the fingerprint's fields
    assert optuna.load_study(study_name="smoke", storage=ws.storage).user_attrs["fingerprint"] == \
        config.study_fingerprint(config.load(SMOKE).to_dict())


# ------------------------------------------------ fault 3: non-finite numbers


@pytest.mark.parametrize("field_name,value", [
    ("training.learning_rate", float("nan")), ("teacher.learning_rate", float("nan")),
    ("training.learning_rate", float("inf")), ("search.temperature.high", float("inf")),
    ("search.temperature.low", float("nan")), ("search.alpha.high", float("nan")),
    ("champion.tolerance", float("inf")), ("dataset.validation_fraction", float("nan")),
    ("student.dropout", float("nan")), ("transfer.fraction", float("nan"))])
def test_every_float_field_must_be_finite(field_name, value):
    with pytest.raises(config.ConfigError) as e:
        config.parse(_with({field_name: value}), "f.yaml")
    assert e.value.field == field_name and "finite" in e.value.message


def test_a_nan_learning_rate_is_one_line_and_exit_2(tmp_path, capsys):
    study_file = tmp_path / "nan.yaml"
    study_file.write_text(SMOKE.read_text().replace("learning_rate: 0.002", "learning_rate: .nan"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, _, err = run_cli(["study", study_file, "--workdir", workdir], capsys)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error:")
    assert "training.learning_rate" in line and str(study_file) in line
    assert list(workdir.iterdir()) == []


def test_a_non_finite_scratch_twin_is_never_cached(small_splits, tmp_path):
    from harness import tracking
    from harness.data.evaluate import predict_logits
    from harness.distill import models
    from harness.search import stores
    from harness.training import twin
    from harness.training.context import Context
    from harness.teacher.trained import Teacher

    cfg = config.parse({"name": "nan", "dataset": {"limit": 2000},
                        "training": {"epochs": 1, "learning_rate": 1e30, "optimizer": "sgd"}}, "nan.yaml")
    ws = stores.Workspace.resolve(tmp_path)
    exp = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    net = models.mlp((28, 28, 1), 10, [16], name="teacher", seed=0)
    teacher = Teacher([net], predict_logits(net, small_splits.transfer.images), 0.0, 0.0, "k", tmp_path,
                      from_cache=True)
    with tracking.start("study", "parent", experiment_id=exp) as parent:
        ctx = Context(cfg, ws, small_splits, teacher, exp, parent.info.run_id)
        raised = None
        try:
            twin.train_or_load(ctx, 8)
        except RuntimeError as e:
            raised = e
    assert not twin.path(ws.workdir, cfg, 8, data=small_splits.digest).exists()  # before: NaN in JSON
    assert type(raised).__name__ == "TwinDiverged" and "not cached" in str(raised)


# ------------------------------------------------ fault 8: the divergence reason


def _fit_with_nan_at_batch_3(steps_per_execution):
    import keras
    import tensorflow as tf

    from harness.distill.guard import DivergenceGuard

    x = np.ones((88, 4), np.float32)  # 22 batches of 4
    x[13] = np.nan  # in batch 3
    y = np.zeros(88, np.int64)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution)
    model.fit(ds, epochs=2, verbose=0, callbacks=[DivergenceGuard()])


def test_the_divergence_reason_names_only_batches_that_exist():
    from harness.distill.guard import Diverged

    with pytest.raises(Diverged) as e:
        _fit_with_nan_at_batch_3(32)
    assert "within batches 0-21 of epoch 1" in str(e.value) and "every 32 batches" in str(e.value)
    with pytest.raises(Diverged) as e:
        _fit_with_nan_at_batch_3(1)
    assert "at batch 3 of epoch 1" in str(e.value)


def test_divergence_reason_ranges():
    from harness.distill.guard import divergence_reason

    assert divergence_reason(math.nan, 1, 32, 63, 50).endswith(
        "within batches 32-49 of epoch 2; the check runs every 32 batches (training.steps_per_execution)")
    assert "within batches 0-7 of epoch 1" in divergence_reason(math.inf, 0, 0, 7, None)
    assert divergence_reason(math.nan, 0, 5, 5, 22) == "training loss became nan at batch 5 of epoch 1"
    json.dumps(divergence_reason(math.nan, 0, 0, 0, 1))


# ------------------------------------------------ the int8 gate, and fault 4: bfloat16 students export


def _trained_student(splits, dtype=None):
    import keras

    from harness.distill import models

    keras.utils.set_random_seed(0)
    student = models.mlp((28, 28, 1), 10, [32], seed=0, dtype=dtype)
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(splits.transfer.images.astype(np.float32), splits.transfer.labels, epochs=2, batch_size=128,
                verbose=0)
    return student


def _check_data(splits, calibration=None, gate=True):
    from harness.deploy import export

    labels = {"validation_labels": splits.validation.labels, "int8_max_drop": 1.0} if gate else {}
    return export.CheckData(splits.validation.images, splits.test.images, splits.test.labels,
                            splits.transfer.images[:300] if calibration is None else calibration, latency_runs=50,
                            **labels)


def test_the_int8_input_is_pinned_to_0_255_whatever_the_calibration_holds(small_splits):
    from harness.deploy import tflite

    student = _trained_student(small_splits)
    dark = (small_splits.transfer.images[:300] // 3).astype(np.uint8)  # pixels below 86
    assert dark.max() < 120
    interp = tflite.interpreter(model_content=tflite.convert(student, "tflite-int8", dark))
    assert tuple(interp.get_input_details()[0]["quantization"]) == (1.0, 0)  # before: (0.33, 0) from the images


def test_the_int8_gate_is_the_validation_accuracy_drop(small_splits, tmp_path):
    from harness.deploy import export
    from harness.deploy.verify import int8_refusal

    # The champion: 98.75% agreement, 87.74% against 87.76%: placed; a 2-point drop: refused.
    assert int8_refusal(0.8776, 0.8774, 0.9875, 1.0, 2000) is None
    why = int8_refusal(0.70, 0.68, 0.995, 1.0, 2000)
    assert "2.00 points > 1 (exports_int8_max_drop)" in why and "agreement 0.9950" in why
    assert int8_refusal(0.70, 0.68, 0.995, 2.5, 2000) is None

    student = _trained_student(small_splits)
    out = tmp_path / "s-int8.tflite"
    f = export.export(student, {"tflite-int8": out}, _check_data(small_splits))["tflite-int8"]
    assert "refused" not in f, f
    assert out.is_file() and f["val_accuracy_drop"] <= 0.01 and 0.9 <= f["agreement"] <= 1
    assert f["input_quantization"] == [1.0, 0.0]
    assert config.parse(_with({"exports_int8_max_drop": 2.5})).exports_int8_max_drop == 2.5
    with pytest.raises(config.ConfigError, match="exports_int8_max_drop"):
        config.parse(_with({"exports_int8_max_drop": -1}))


def test_a_bfloat16_student_exports_from_a_float32_copy_and_a_failing_format_is_refused_alone(small_splits,
                                                                                             tmp_path):
    from harness.deploy import export

    student = _trained_student(small_splits, dtype="mixed_bfloat16")
    outs = {kind: tmp_path / name for kind, name in
            (("savedmodel", "s"), ("tflite", "s.tflite"), ("tflite-int8", "s-int8.tflite"))}
    figures = export.export(student, outs, _check_data(small_splits, gate=False))
    for kind, out in outs.items():
        assert "refused" not in figures[kind], figures[kind]
        assert out.exists()
    assert figures["tflite"]["max_diff"] <= 1e-3
    # A format that cannot be written (here: int8 without calibration images) is refused alone.
    outs2 = {kind: tmp_path / "again" / out.name for kind, out in outs.items()}
    figures = export.export(student, outs2, _check_data(small_splits, small_splits.transfer.images[:0], gate=False))
    assert "could not be written" in figures["tflite-int8"]["refused"] and not outs2["tflite-int8"].exists()
    assert outs2["savedmodel"].is_dir() and outs2["tflite"].is_file()
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["s", "s.tflite"]


# ------------------------------------------------ fault 9: pyfunc takes the images users have


def test_the_logged_student_predicts_uint8_and_float64_images_through_pyfunc(tmp_path):
    import keras
    import mlflow

    from harness import registry, tracking
    from harness.distill import models

    exp = tracking.setup(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, "pyfunc")  # artifacts under tmp_path
    keras.utils.set_random_seed(0)
    student = models.mlp((28, 28, 1), 10, [8], seed=0)
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
    with mlflow.start_run(experiment_id=exp):
        info = registry.log_student(student, x)
    model = mlflow.pyfunc.load_model(info.model_uri)
    want = student(x.astype(np.float32), training=False).numpy()
    for dtype in (np.uint8, np.float64, np.float32):  # before: only float32 passed the logged schema
        np.testing.assert_allclose(np.asarray(model.predict(x.astype(dtype))), want, atol=1e-5)


# ------------------------------------------------ also noticed: what the registry holds, make ui


def test_with_omitted_classes_the_registered_champion_is_the_bias_corrected_student(small_splits, tmp_path):
    import mlflow

    from harness import registry, tracking
    from harness.data import omitted
    from harness.deploy import champion
    from harness.record import TrialRecord

    cfg = config.parse({"name": "omit", "dataset": {"limit": 2000}, "transfer": {"omit_classes": [3]}}, "omit.yaml")
    keep = ~np.isin(small_splits.transfer.labels, [3])
    import keras

    from harness.distill import models
    keras.utils.set_random_seed(0)
    student = models.mlp((28, 28, 1), 10, [32], seed=0)
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(small_splits.transfer.images[keep].astype(np.float32), small_splits.transfer.labels[keep],
                epochs=2, batch_size=128, verbose=0)
    path = tmp_path / "trial-0.keras"
    student.save(path)
    exp = tracking.setup(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, cfg.name)
    with tracking.start("study", "parent", experiment_id=exp) as parent:
        with tracking.start("trial", "trial-0", parent_run_id=parent.info.run_id, experiment_id=exp) as run:
            info = registry.log_student(student, None)
        record = TrialRecord(number=0, mlflow_run_id=run.info.run_id, model_uri=info.model_uri,
                             model_path=str(path))
        champion.test_and_register(cfg, record, small_splits)
    registered = mlflow.keras.load_model(f"models:/{champion.registered_name(cfg.name)}@{champion.ALIAS}")
    deployed = champion.deployable(cfg, champion.load_student(record), small_splits)
    x = small_splits.test.images[:200].astype(np.float32)
    fix = omitted.correct(student, small_splits, [3])
    assert fix.shift != 0  # a correction that changes the logits, so the two models differ
    np.testing.assert_allclose(registered.predict(x, verbose=0), deployed.predict(x, verbose=0), atol=1e-5)


def test_make_ui_is_lean():
    from helpers import ROOT

    ui = ROOT.joinpath("Makefile").read_text().split("\nui:")[1].split("\n\n")[0]
    assert "--workers 1" in ui and "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in ui


def test_several_machines_search_only_and_one_finish_confirms_and_registers_once(tmp_path, smoke_teacher_cache):
    from helpers import cli, load_study, mlflow_client, workdir_with_teacher, write_study

    study_file = write_study(tmp_path, name="finish", n_trials=2, **{"confirm.seeds": 0})
    workdir = workdir_with_teacher(tmp_path / "work", smoke_teacher_cache)
    for _ in range(2):  # two "machines", one trial each, on the same stores
        out = cli("study", study_file, "--workdir", workdir, "--n-trials", 1, "--search-only").stdout
        assert "harness finish" in out and "champion:" not in out
    study = load_study(workdir, "finish")
    assert len(study.trials) == 2 and "confirmed" not in study.user_attrs
    client = mlflow_client(workdir)
    students = "name='finish-student'"
    assert client.search_registered_models(students) == []  # no champion yet (the teacher is registered)
    out = cli("finish", study_file, "--workdir", workdir, "--no-export").stdout
    assert "champion: trial" in out and "0 new trial(s)" in out
    assert len(load_study(workdir, "finish").trials) == 2
    (model,) = client.search_registered_models(students)
    assert model.name == "finish-student" and len(client.search_model_versions(students)) == 1
