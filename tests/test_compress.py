"""Compression without the dip: the within_teacher rule, the compact families, `harness compress` and
lineage.

The rule is tested on `Confirmed` objects (no training); the command end to end on a folder of PNGs
written here (3 classes x 60 images, 16x16) with a tiny .keras teacher trained here, then again with
that teacher registered (`models:/...`), so both kinds of lineage are read back from the registry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from harness import compress, config, files
from harness.config import ChampionConfig, ConfigError
from harness.confirm.confirmation import Confirmed
from harness.confirm.stats import Interval
from harness.deploy import champion, compression
from tests.helpers import mlflow_client, run_cli


def _iv(mean, half=0.005, n=3):
    return Interval(mean, mean - half, mean + half, n)


def _confirmed(trial, params, val, gain=0.0, gain_half=0.002):
    """A Confirmed with validation mean `val` and paired distilled - scratch validation gain `gain`."""
    iv = _iv(val)
    return Confirmed(trial, 8 * trial, params, 2.0, 0.5, 3, iv, iv, _iv(val - gain), _iv(val - gain),
                     Interval(gain, gain - gain_half, gain + gain_half, 3), _iv(gain), iv, iv, iv, iv, iv, iv)


RULE = ChampionConfig(rule="within_teacher", tolerance=1.0)


def test_within_teacher_picks_the_smallest_within_tolerance_of_the_teacher():
    cands = [_confirmed(1, 5_000, 0.880), _confirmed(2, 20_000, 0.915), _confirmed(3, 80_000, 0.925)]
    # teacher at 92.0: 91.5 and 92.5 qualify (within 1.0 point), 88.0 does not; the smaller wins
    assert champion.select(cands, RULE, teacher_val=0.920).trial == 2
    # a size objective other than params decides "smallest"
    assert champion.select(cands, RULE, cost=lambda c: -c.params, teacher_val=0.920).trial == 3
    # the rule looks at the teacher, not the best student: smallest_within would take trial 2 too, but
    # with a teacher at 95.0 nothing is within 1 point
    assert champion.select(cands, RULE, teacher_val=0.950) is None


def test_none_qualifies_is_one_line_naming_the_closest_with_its_gap():
    cands = [_confirmed(1, 5_000, 0.880), _confirmed(2, 20_000, 0.915)]
    line = compression.none_line(cands, 1.0, 0.950)
    assert "\n" not in line and "nothing registered" in line
    assert "trial 2" in line and "-3.50 ± 0.50" in line  # the closest, its gap and interval


def test_the_twin_better_case_is_told_apart():
    better = _confirmed(1, 5_000, 0.900, gain=-0.010)  # distilled 1 point below its twin, interval excludes 0
    assert compression.twin_better(better)
    assert "scratch twin is significantly better" in compression.twin_line(better)
    assert not compression.twin_better(_confirmed(1, 5_000, 0.900, gain=-0.010, gain_half=0.02))  # not significant
    assert not compression.twin_better(_confirmed(1, 5_000, 0.900, gain=+0.010))  # distillation wins


def test_compression_columns_give_the_test_gap_and_ratios_to_the_teacher():
    c = _confirmed(1, 5_000, 0.900)
    teacher = {"test_accuracy": 0.93, "val_accuracy": 0.92,
               "cost": {"params": 50_000, "size_bytes": 200_000, "latency_ms": 0.2}}
    lines = compression.table_lines([c], {"1": {"params": 5_000, "size_bytes": 20_000, "latency_ms": 0.05}}, teacher)
    row = lines[-1].split()
    assert row[:3] == ["1", "8", "5,000"] and row[3] == "-3.00"  # test 90.00 vs 93.00
    assert row[-3:] == ["0.100", "0.100", "0.250"]  # params, size, latency as student / teacher


@pytest.mark.parametrize("tolerance", ["nan", "-1", "inf", "abc"])
def test_a_bad_tolerance_is_one_line_exit_2_nothing_written(tolerance, tmp_path, capsys):
    code, out, err = run_cli(["compress", "--teacher", tmp_path, "--data", tmp_path, "--tolerance", tolerance,
                              "--workdir", tmp_path], capsys)
    assert code == 2 and "--tolerance" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [float("nan"), -0.5, float("inf")])
def test_a_bad_champion_tolerance_in_the_study_file_is_refused(value):
    with pytest.raises(ConfigError, match="champion.tolerance"):
        config.parse({"name": "x", "champion": {"rule": "within_teacher", "tolerance": value}})


def test_within_teacher_without_a_teacher_accuracy_is_refused():
    cfg = config.parse({"name": "x", "champion": {"rule": "within_teacher", "tolerance": 1.0}})
    for missing in (None, math.nan):
        with pytest.raises(ConfigError, match="champion.rule"):
            compression.check_teacher_accuracy(cfg, missing)
        with pytest.raises(ConfigError, match="champion.rule"):
            champion.select([_confirmed(1, 5, 0.9)], RULE, teacher_val=missing)


def test_the_compact_families_return_logits_of_0_255_images_and_honour_the_budget(tmp_path):
    from harness.distill.models import build_student
    from harness.search import space

    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype(np.float32)
    sep = build_student(config.StudentConfig(family="separable", depth=2, width_multiplier=0.5), 16, (16, 16, 1), 3)
    assert [layer.filters for layer in sep.layers if layer.name.startswith("sep_")] == [8, 16]
    assert np.asarray(sep(x)).shape == (2, 3)
    mob = build_student(config.StudentConfig(family="mobilenet_v3_small"), 25, (16, 16, 1), 3)
    assert np.asarray(mob(x)).shape == (2, 3)  # resized to 32x32 and tiled to 3 channels inside
    cfg = config.parse({"name": "x", "student": {"family": "separable"}, "max_params": 2_000,
                        "search": {"width": {"choices": [4, 8, 64]}, "depth": {"choices": [1, 3]}}})
    assert space.allowed_widths(cfg, (16, 16, 1), 3) == [4, 8]  # at the deepest choice, 64 is over


def test_a_users_builder_gets_depth_and_width_multiplier_when_it_takes_them(tmp_path):
    from harness.distill import builder

    (tmp_path / "mine.py").write_text(
        "import keras\n"
        "seen = {}\n"
        "def net(width, input_shape, num_classes, depth=1, width_multiplier=1.0):\n"
        "    seen.update(depth=depth, width_multiplier=width_multiplier)\n"
        "    i = keras.Input(input_shape)\n"
        "    return keras.Model(i, keras.layers.Dense(num_classes)(keras.layers.Flatten()(i)))\n")
    builder.build("mine:net", str(tmp_path / "s.yaml"), 50, (4, 4, 1), 3, depth=3)
    import mine

    assert mine.seen == {"depth": 3, "width_multiplier": 0.5}


def _png_folder(root, classes=3, per_class=60, size=16):
    """`root/<class>/<i>.png`: class k is a bright square in corner k over noise (learnable in an epoch)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 1), dtype=np.uint8)
            r, c = divmod(k, 2)
            img[r * size // 2:(r + 1) * size // 2, c * size // 2:(c + 1) * size // 2] += 150
            (root / f"c{k}" / f"{i:03d}.png").write_bytes(tf.io.encode_png(img).numpy())
    return root


def _tiny_teacher(folder, path):
    """A small Keras CNN trained on the folder's images (logits out, 0-255 in)."""
    import keras

    keras.utils.set_random_seed(0)
    ds = keras.utils.image_dataset_from_directory(folder, color_mode="grayscale", image_size=(16, 16), seed=0)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.MaxPooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(16, activation="relu")(x)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds, epochs=15, verbose=0)
    model.save(path)
    return path


def _tiny(path, exports=("savedmodel",)):
    """Cut the written study to a smoke-sized run (the command then runs the edited file as it is)."""
    d = yaml.safe_load(path.read_text())
    d.update(n_trials=1, confirm={"seeds": 2}, exports=list(exports))
    d["training"].update(epochs=1, batch_size=32)
    d["search"].update(width={"choices": [4]}, depth={"choices": [1]})
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def test_compress_end_to_end_with_lineage_from_a_file_and_from_the_registry(tmp_path, capsys, monkeypatch):
    folder = _png_folder(tmp_path / "images")
    teacher = _tiny_teacher(folder, tmp_path / "teacher.keras")
    work = tmp_path / "work"
    work.mkdir()
    argv = ["compress", "--teacher", teacher, "--data", folder, "--tolerance", "100", "--workdir", work]
    written = compress.write(str(teacher), str(folder), 100, None, work, "test")
    assert written.name == "images-compress.yaml"
    d = yaml.safe_load(written.read_text())  # readable: the rule, the families, absolute paths
    assert d["champion"] == {"rule": "within_teacher", "tolerance": 100.0}
    assert d["student"]["family"] == "separable" and d["teacher"]["model"] == str(teacher)
    _tiny(written)

    # the first study takes the twin-better path (its condition is tested above), so the model registered
    # is the confirmation's scratch twin, saved by the twin's own run
    monkeypatch.setattr(compression, "twin_better", lambda c: True)
    code, out, err = run_cli(argv, capsys)
    monkeypatch.undo()
    assert code == 0, err
    assert "scratch twin is significantly better" in out and "its scratch twin (seed 1), registered" in out
    assert list((work / "baselines").glob("*.keras"))
    assert (work / "exports" / "images-compress-champion" / "saved_model.pb").exists()  # under 20 test images too
    assert "about" in out and "min one run at a time" in out  # the confirmation's estimate, before it starts
    assert "against the teacher" in out and "ratio = student / teacher" in out
    client = mlflow_client(work)
    mv = client.get_model_version_by_alias("images-compress-student", "champion")
    assert mv.tags["harness.teacher"] == str(teacher)
    assert mv.tags["harness.teacher_sha256"] == files.sha256(teacher)
    assert mv.tags["harness.study"] == "images-compress" and len(mv.tags["harness.data_digest"]) > 8
    assert mv.tags["harness.study_sha256"] == files.sha256(written)
    assert mv.tags["harness.trained_as"] == "scratch"
    assert client.get_run(mv.run_id).data.tags["harness.role"] == "confirm"  # the twin's own run
    code, out, err = run_cli(["report", written, "--workdir", work], capsys)
    assert code == 0 and "<- champion (its scratch twin, registered)" in out, err
    # `export` with no --trial exports the registered model, the twin, not its trial's distilled student
    import mlflow
    import tensorflow as tf

    out = tmp_path / "exported"
    code, _, err = run_cli(["export", written, "--workdir", work, "--out", out], capsys)
    assert code == 0, err
    registered_student = mlflow.keras.load_model(f"models:/images-compress-student/{mv.version}")
    x = np.random.default_rng(0).uniform(0, 255, (3, *registered_student.input_shape[1:])).astype(np.float32)
    assert np.abs(tf.saved_model.load(str(out)).serve(x).numpy() - registered_student.predict(x, verbose=0)).max() \
        <= 1e-5

    # the same teacher from the registry, for a second study in the same store
    import keras

    with mlflow.start_run(experiment_id=mlflow.create_experiment("teachers")):
        info = mlflow.keras.log_model(keras.models.load_model(teacher), name="model")
    registered = mlflow.register_model(info.model_uri, "tiny-teacher")
    uri = f"models:/tiny-teacher/{registered.version}"
    second = compress.write(uri, str(folder), 100, "second", work, "test")
    _tiny(second, exports=())  # lineage only: `exports: []` registers and writes no export
    code, out, err = run_cli(["compress", "--teacher", uri, "--data", folder, "--tolerance", "100",
                              "--name", "second", "--workdir", work], capsys)
    assert code == 0, err
    mv2 = client.get_model_version_by_alias("second-student", "champion")
    assert mv2.tags["harness.teacher"] == uri
    assert mv2.tags["harness.teacher_version"] == f"tiny-teacher/{registered.version}"
    assert not (work / "exports" / "second-champion").exists()
    taught = client.get_model_version("tiny-teacher", registered.version)
    assert taught.tags["harness.student.second"] == f"models:/second-student/{mv2.version}"

    # the same command with another tolerance than its file's: one line, exit 2
    code, out, err = run_cli([*argv[:-3], "5", "--workdir", work], capsys)
    assert code == 2 and "champion" in err and len(err.strip().splitlines()) == 1

