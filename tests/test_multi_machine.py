"""Two 'machines' (processes with their own working directories) on one PostgreSQL Optuna
storage and one MLflow tracking server, both real and bound to loopback."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import requests
from helpers import popen_harness, workdir_with_teacher, write_study


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.skip("PostgreSQL is not installed: `make postgres` installs Debian's postgresql package")
    bindir = Path(bins[-1])
    base = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # not under pytest's 0700 root folder
    run_as = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = base / "data"
    subprocess.run(run_as + [bindir / "initdb", "-D", data, "-U", "harness", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run(run_as + [bindir / "pg_ctl", "-D", data, "-l", base / "log", "-w", "-o",
                             f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    for db in ("optuna", "mlflow"):
        subprocess.run(run_as + [bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "harness", db],
                       check=True, capture_output=True)
    yield f"postgresql://harness@127.0.0.1:{port}"
    subprocess.run(run_as + [bindir / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    port = _free_port()
    artifacts = tmp_path_factory.mktemp("artifacts")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"{postgres}/mlflow",
         "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # MLflow 3's job runner (seven huey consumers, each importing mlflow) is not used here
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True)  # its own process group: the server starts helpers of its own
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {server.stderr.read()[-2000:]}")
        time.sleep(1)
    else:
        os.killpg(server.pid, signal.SIGKILL)
        raise RuntimeError("mlflow server did not come up in 120 s")
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_two_machines_share_one_study(postgres, tracking_server, tmp_path, smoke_teacher_cache):
    study_file = write_study(tmp_path, name="shared", **{"confirm.seeds": 0})
    procs = []
    for machine in ("a", "b"):
        workdir = workdir_with_teacher(tmp_path / machine, smoke_teacher_cache)
        procs.append(popen_harness("study", study_file, "--workdir", workdir, "--n-trials", 2, "--no-export",
                                   "--storage", f"{postgres}/optuna", "--tracking-uri", tracking_server))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)

    study = optuna.load_study(study_name="shared", storage=f"{postgres}/optuna")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_server)
    client = MlflowClient()
    exp = client.get_experiment_by_name("shared")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get("harness.role") == "trial"]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trial_runs) == [0, 1, 2, 3]
    assert len([r for r in runs if r.data.tags.get("harness.role") == "study"]) == 2
    assert client.get_model_version_by_alias("shared-student", "champion").run_id in {
        r.info.run_id for r in trial_runs}
