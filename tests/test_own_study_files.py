"""A whole study on a user's files (issue 28): a stored study resumes only on the contents it was
made with (teacher file, builder source, unlabeled images, data), a missing --workdir is made,
MLflow's registry lines stay quiet, scratch twins see no unlabeled image; images too small for a
cnn's pools are refused before anything is written; the set-up installs the package."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
from helpers import ROOT, mlflow_client, run_cli
from PIL import Image
from test_own_teacher_files import K, brightness_teacher

BUILDER = '''import keras


def tiny(width, input_shape, num_classes):
    x = keras.Input(input_shape)
    h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(x))
    h = keras.layers.Dense(width, activation="relu")(h)
    return keras.Model(x, keras.layers.Dense(num_classes)(h))
'''

POOLS3 = '''import keras


def pools3(width, input_shape, num_classes):
    x = keras.Input(input_shape)
    h = keras.layers.Rescaling(1 / 255)(x)
    for _ in range(3):
        h = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(width, 3, padding="same")(h))
    return keras.Model(x, keras.layers.Dense(num_classes)(keras.layers.Flatten()(h)))
'''


def _images(root, size=8, per_class=20):
    rng = np.random.default_rng(0)
    for k in range(K):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((60 * k + rng.integers(0, 60, (size, size))).astype(np.uint8)).save(
                root / f"class{k}" / f"{i:02d}.png")


def _study(d, **extra):
    import yaml

    cfg = {"name": "own", "dataset": {"folder": "images"},
           "training": {"epochs": 1, "batch_size": 16, "jit_compile": False},
           "search": {"width": {"choices": [8]}}, "n_trials": 1, "confirm": {"seeds": 0},
           "heartbeat": {"interval": 1, "grace_period": 3}, "exports": ["savedmodel"], **extra}
    (d / "own.yaml").write_text(yaml.safe_dump(cfg))
    return d / "own.yaml"


def _refused(argv, capsys, field, words):
    code, out, err = run_cli(argv, capsys)
    assert code == 2, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert f"{field}:" in lines[0] and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_a_resumed_study_holds_the_contents_it_was_made_with(tmp_path, capsys):
    d = tmp_path
    _images(d / "images")
    brightness_teacher().save(d / "teacher.keras")
    (d / "my_students.py").write_text(BUILDER)
    for i, sub in enumerate(["", "", "batch/", "batch/", "batch/deeper/"]):
        (d / "unlabeled" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(d / "unlabeled" / sub / f"u{i}.png")
    study = _study(d, teacher={"model": "teacher.keras"}, student={"builder": "my_students:tiny"},
                   transfer={"unlabeled": "unlabeled"})
    work = d / "not" / "yet" / "work"  # made when missing
    code, out, err = run_cli(["study", study, "--workdir", work, "--no-export"], capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "Successfully registered model" not in out + err and "Created version" not in out + err
    client = mlflow_client(work)
    exp = client.get_experiment_by_name("own")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    seen = {(r.data.tags.get("harness.role"), r.data.metrics.get("unlabeled_examples")) for r in runs}
    assert ("twin", 0.0) in seen and ("trial", 5.0) in seen, seen  # twins see none of the 5 images
    n_runs = len(runs)

    def changed(path, write, field, words):
        before = path.read_bytes()
        write()
        _refused(["study", study, "--workdir", work], capsys, field, ["its content changed", "new `name:`", *words])
        path.write_bytes(before)

    changed(d / "teacher.keras", lambda: brightness_teacher(sharp=5.0).save(d / "teacher.keras"), "teacher.model", [])
    changed(d / "my_students.py", lambda: (d / "my_students.py").write_text(BUILDER.replace("relu", "tanh")),
            "student.builder", [])
    extra = d / "unlabeled" / "batch" / "deeper" / "u4.png"
    changed(extra, lambda: Image.fromarray(np.full((8, 8), 99, np.uint8)).save(extra), "transfer.unlabeled", [])
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == n_runs  # nothing written


def test_images_too_small_for_the_pools_are_refused_before_anything_is_written(tmp_path, capsys):
    d = tmp_path
    _images(d / "images", size=4, per_class=6)
    (d / "pools3.py").write_text(POOLS3)
    work = d / "work"
    work.mkdir()
    cases = [({"student": {"family": "cnn", "depth": 3}}, "student.depth", ["4x4", "smallest size that works is 8x8"]),
             ({"teacher": {"family": "cnn", "widths": [4, 4, 4], "epochs": 1}}, "teacher.widths",
              ["4x4", "smallest size that works is 8x8"]),
             ({"student": {"builder": "pools3:pools3"}}, "student.builder", ["smallest size that works is 8x8"])]
    for extra, field, words in cases:
        teacher = {"widths": [32], "epochs": 30, "dropout": 0.0, "input_dropout": 0.0, "learning_rate": 0.01}
        study = _study(d, teacher={**teacher, **extra.get("teacher", {})},
                       **{k: v for k, v in extra.items() if k != "teacher"})
        _refused(["study", study, "--workdir", work], capsys, field, words)
        assert list(work.iterdir()) == []  # no MLflow or Optuna store, no teacher, no lock file
    _refused(["study", study, "--workdir", d / "new"], capsys, "student.builder", [])
    assert not (d / "new").exists()  # a --workdir made for a refused study is taken back


def test_the_setup_installs_the_package_so_it_runs_from_any_folder(tmp_path):
    recipe = re.search(r"^\$\(VENV\)/\.installed:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)
    assert re.search(r"\$\(PY\) -m pip install .*--no-deps -e \.", recipe), recipe
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ in it
    shutil.copytree(ROOT / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(tmp_path / "pkg"), str(src)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(tmp_path / "pkg")}
    for cmd in ([sys.executable, "-m", "harness", "--help"], [str(tmp_path / "pkg" / "bin" / "harness"), "--help"]):
        proc = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "study" in proc.stdout, proc.stderr[-2000:]
