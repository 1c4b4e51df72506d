"""Running the command line for real, in a subprocess, as a researcher would."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.yaml"


def harness(*args, cwd=None, timeout=600, check=True, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
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
