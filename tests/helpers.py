"""Running the command line for real, in a subprocess, as a researcher would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.yaml"


def workdir_with_teacher(directory, teacher_cache):
    """A fresh working directory holding a copy of the smoke teacher's cache (see conftest)."""
    import shutil

    workdir = Path(directory)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(teacher_cache, workdir / "teacher_cache")
    return workdir


def harness(*args, cwd=None, timeout=600, check=True, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_cli(argv, capsys):
    """`python -m harness ARGV` in this process (`cli`): returns (exit code, stdout, stderr). `capsys` is
    drained first, so what the test printed before is not taken for the command's output."""
    capsys.readouterr()
    proc = cli(*argv, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def cli(*args, check=True):
    """`python -m harness ARGS` in this process, for the tests whose subject is not the process itself
    (a crash, a signal, several workers, what the console prints): the same `cli.main`, minus a new
    interpreter's 8 s of imports. Returns an object with `returncode`, `stdout` and `stderr`, like
    `harness`, and raises the same way when `check` and the exit code is not 0."""
    import contextlib
    import io
    import logging
    import types

    from harness import cli as command_line

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = command_line.main(argv)
    finally:  # the command line points logging at its stdout; give the test process its own back
        root.handlers[:] = handlers
        root.setLevel(level)
    proc = types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check and code != 0:
        raise AssertionError(f"harness {' '.join(argv)} exited {code}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def mlflow_client(workdir):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{Path(workdir) / 'mlflow.db'}")
    return MlflowClient()


def runs_by_role(client, experiment_name):
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    out = {}
    for r in runs:
        out.setdefault(r.data.tags.get("harness.role"), []).append(r)
    return out


def load_study(workdir, name="smoke"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path(workdir) / 'optuna.db'}")


def write_study(directory, name="smoke", **overrides):
    """A copy of the smoke study with dotted-key overrides: write_study(d, **{"training.epochs": 3})."""
    import yaml

    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["name"] = name
    cfg["exports"] = ["savedmodel"]  # the TFLite exports are tested on the smoke study itself
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = Path(directory) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def popen_harness(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_line(proc, pattern, timeout=300):
    """Read the process's output until a line matches; return everything read."""
    import re
    import time

    seen, t0 = [], time.time()
    for line in proc.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
        if time.time() - t0 > timeout:
            break
    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(seen)[-3000:]}")
