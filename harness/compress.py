"""`harness compress --teacher URI_OR_FILE --data FOLDER_OR_NPZ --tolerance POINTS [--name NAME]`.

It writes the study file it runs, `WORKDIR/NAME.yaml` (readable, editable, resumable: the same
command again runs the file as it is, edits included, and resumes the stored study), then runs it.
The study asks the question a user brings: the smallest student whose confirmed validation mean is
within POINTS of the teacher's validation accuracy (`champion.rule: within_teacher`), searched over
the depth and width of a depthwise-separable CNN (`distill/families.py`), confirmed over seeds
against its scratch twin, registered with its lineage (`deploy/lineage.py`).

The defaults (`DEFAULTS`) are sized so a first run on a folder of a few thousand 32x32 images
finishes in under 30 minutes on 2 cores (how that was estimated: docs/compress.md).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import yaml

from harness.config import ConfigError

FIELD_TOLERANCE = "--tolerance"
REGISTRY = ("models:/", "runs:/")

DEFAULTS = {
    "seed": 0,
    "student": {"family": "separable", "depth": 2, "batch_norm": False},
    "training": {"epochs": 12, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.003,
                 "schedule": "cosine", "jit_compile": False},
    "search": {"temperature": {"low": 1.0, "high": 8.0, "log": True}, "alpha": {"low": 0.0, "high": 1.0},
               "width": {"choices": [8, 16, 32]}, "depth": {"choices": [2, 3]}},
    "objectives": ["val_accuracy", "params"],
    "n_trials": 10,
    "confirm": {"seeds": 3},
    "exports": ["savedmodel", "tflite", "tflite-int8"],
}

HEADER = """\
# Written by `harness compress` ({when}): the smallest student within {tolerance:g} points of the teacher.
# Edit anything and run the same command again (or `harness study {file} --workdir {workdir}`):
# the stored study resumes. Every field: docs/study-files.md.
"""


def check_tolerance(value, source: str = "harness compress") -> float:
    """POINTS as a finite number >= 0 (ConfigError naming --tolerance otherwise)."""
    try:
        points = float(value)
    except (TypeError, ValueError):
        raise ConfigError(source, FIELD_TOLERANCE, f"must be a number of accuracy points, got {value!r}") from None
    if not math.isfinite(points) or points < 0:
        raise ConfigError(source, FIELD_TOLERANCE, f"must be a finite number of accuracy points, 0 or more, "
                                                   f"got {value!r}")
    return points


def _teacher(ref: str) -> str:
    if ref.startswith(REGISTRY):
        return ref
    p = Path(ref).expanduser().resolve()
    if not p.exists():
        raise ConfigError("harness compress", "--teacher", f"{ref}: no such file or folder (give a .keras file, a "
                                                           "SavedModel folder or models:/NAME@ALIAS)")
    return str(p)


def _data(ref: str) -> dict:
    p = Path(ref).expanduser().resolve()
    if p.is_dir():
        return {"folder": str(p)}
    if p.is_file() and p.suffix == ".npz":
        return {"arrays": str(p)}
    raise ConfigError("harness compress", "--data", f"{ref}: not a folder of class subfolders nor an .npz file")


def default_name(data: str) -> str:
    """A study name from the data's file or folder name: letters, digits, _ and - only."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(data).expanduser().resolve().stem).strip("_") or "data"
    return f"{stem}-compress"


def study_dict(teacher: str, data: str, tolerance: float, name: str) -> dict:
    """The study `harness compress` writes (see DEFAULTS)."""
    d = {"name": name, **copy.deepcopy(DEFAULTS)}
    d["dataset"] = {**_data(data), "validation_fraction": 0.1}
    d["teacher"] = {"model": _teacher(teacher), "outputs": "auto"}
    d["champion"] = {"rule": "within_teacher", "tolerance": tolerance}
    order = ["name", "seed", "dataset", "teacher", "student", "training", "search", "objectives", "n_trials",
             "confirm", "champion", "exports"]
    return {k: d[k] for k in order}


def write(teacher: str, data: str, tolerance, name: str | None, workdir: str | Path, when: str) -> Path:
    """`WORKDIR/NAME.yaml`, written unless it exists (then it is the user's, and runs as it is, unless
    its teacher, data or tolerance differ from the command's: ConfigError). Every argument is checked
    before anything is written."""
    points = check_tolerance(tolerance)
    name = name or default_name(data)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError("harness compress", "--name", f"{name!r}: letters, digits, '.', '_' and '-' only")
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise ConfigError("harness compress", "--workdir", f"{workdir}: no such folder")
    wanted = study_dict(teacher, data, points, name)
    path = workdir / f"{name}.yaml"
    if path.exists():
        have = yaml.safe_load(path.read_text()) or {}
        for field in ("dataset", "teacher", "champion"):
            keys = [k for k in wanted[field] if k not in ("validation_fraction", "outputs")]
            if any((have.get(field) or {}).get(k) != wanted[field][k] for k in keys):
                raise ConfigError(str(path), field, f"the study file exists with another {field} than this command's; "
                                                    "give another --name, or edit the file and run it")
        return path
    text = HEADER.format(when=when, tolerance=points, file=path, workdir=workdir) + \
        yaml.safe_dump(wanted, sort_keys=False, default_flow_style=None, width=110)
    path.write_text(text)
    return path


def arguments(p) -> None:
    """The command's arguments on the argparse parser `p` (cli.py)."""
    p.add_argument("--teacher", required=True, metavar="URI_OR_FILE",
                   help="a .keras file, a SavedModel folder, models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--data", required=True, metavar="FOLDER_OR_NPZ",
                   help="a folder of class subfolders (or train/ and test/), or an .npz of x_train, y_train")
    p.add_argument("--tolerance", required=True, metavar="POINTS",
                   help="accuracy points below the teacher's validation accuracy a student may fall")
    p.add_argument("--name", default=None, help="the study's name (default: DATA's name + '-compress')")
    p.add_argument("--workdir", default=".", help="holds the study file, stores, caches and exports (default: .)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///WORKDIR/optuna.db)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
