"""A crash (kill -9) and Ctrl-C in the middle of a trial, done for real on subprocesses."""

import signal
import time

import optuna
from helpers import (
    cli,
    load_study,
    mlflow_client,
    popen_harness,
    runs_by_role,
    wait_for_line,
    workdir_with_teacher,
    write_study,
)

from harness import config

TS = optuna.trial.TrialState


def _runs(workdir, name):
    client = mlflow_client(workdir)
    return client, [r for rs in runs_by_role(client, name).values() for r in rs]


def _interrupt_second_trial(tmp_path, teacher_cache, name, sig, epochs=2):
    """The signal is sent when trial 1 says it starts its fit (not after a guessed time)."""
    study_file = write_study(tmp_path, name=name, n_trials=3, **{"confirm.seeds": 0, "training.epochs": epochs})
    workdir = workdir_with_teacher(tmp_path / "work", teacher_cache)
    proc = popen_harness("study", study_file, "--workdir", workdir, "--no-export")
    wait_for_line(proc, r"trial +0 complete")
    wait_for_line(proc, r"trial +1 distilling")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return study_file, workdir, proc.returncode, out


def test_sigkill_mid_trial_then_resume_loses_nothing(tmp_path, smoke_teacher_cache):
    study_file, workdir, rc, _ = _interrupt_second_trial(tmp_path, smoke_teacher_cache, "crash", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    study = load_study(workdir, "crash")
    assert [t.state for t in study.trials] == [TS.COMPLETE, TS.RUNNING]
    killed_params = study.trials[1].params
    _, runs = _runs(workdir, "crash")
    left_running = {r.info.run_id for r in runs if r.info.status == "RUNNING"}
    assert left_running  # the crash really left runs open

    # Optuna fails a RUNNING trial once its heartbeat is older than the grace period; a resume within it
    # takes the trial for another worker's, alive (the data read alone outlasted it before it was held)
    time.sleep(config.load(study_file).heartbeat.grace_period + 1)
    again = cli("study", study_file, "--workdir", workdir, "--no-export")
    assert "training teacher" not in again.stdout
    study = load_study(workdir, "crash")
    states = [t.state for t in study.trials]
    assert states[0] == TS.COMPLETE and states[1] == TS.FAIL
    assert states.count(TS.COMPLETE) == 3 and TS.RUNNING not in states
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].state == TS.COMPLETE and retried[0].params == killed_params
    client, runs = _runs(workdir, "crash")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for run_id in left_running:
        assert client.get_run(run_id).info.status == "KILLED"
    trial_runs = [r for r in runs if r.data.tags.get("harness.role") == "trial" and r.info.status == "FINISHED"]
    assert len(trial_runs) == 3


def test_ctrl_c_closes_the_trial_and_its_run(tmp_path, smoke_teacher_cache):
    # 10 epochs (the smoke study's 2 take about 0.1 s): the fit outlasts the signal's way there, so
    # Ctrl-C lands inside it however quiet or busy the machine, never after the trial completed.
    study_file, workdir, rc, out = _interrupt_second_trial(tmp_path, smoke_teacher_cache, "sigint", signal.SIGINT,
                                                           epochs=10)
    assert rc == 130, out[-2000:]
    assert "run the same command again" in out
    assert "Traceback" not in out
    study = load_study(workdir, "sigint")
    assert [t.state for t in study.trials] == [TS.COMPLETE, TS.FAIL]
    _, runs = _runs(workdir, "sigint")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags.get("harness.role") == "study"][0]
    assert parent.info.status == "KILLED"
