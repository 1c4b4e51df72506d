"""Crashes, Ctrl-C, parallel workers and divergence, done for real on subprocesses."""

import signal
import time

import optuna

from helpers import (harness, load_study, mlflow_client, popen_harness, runs_by_role, wait_for_line,
                     workdir_with_teacher, write_study)

TS = optuna.trial.TrialState


def _runs(workdir, name):
    client = mlflow_client(workdir)
    return client, [r for rs in runs_by_role(client, name).values() for r in rs]


def _interrupt_second_trial(tmp_path, teacher_cache, name, sig):
    study_file = write_study(tmp_path, name=name, n_trials=3, **{"confirm.seeds": 0})
    workdir = workdir_with_teacher(tmp_path / "work", teacher_cache)
    proc = popen_harness("study", study_file, "--workdir", workdir, "--no-export")
    wait_for_line(proc, r"trial +0 complete")
    time.sleep(2.0)  # now inside trial 1 (its baseline or its fit)
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

    again = harness("study", study_file, "--workdir", workdir, "--no-export")
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
    study_file, workdir, rc, out = _interrupt_second_trial(tmp_path, smoke_teacher_cache, "sigint", signal.SIGINT)
    assert rc == 130, out[-2000:]
    assert "run the same command again" in out
    assert "Traceback" not in out
    study = load_study(workdir, "sigint")
    assert [t.state for t in study.trials] == [TS.COMPLETE, TS.FAIL]
    _, runs = _runs(workdir, "sigint")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags.get("harness.role") == "study"][0]
    assert parent.info.status == "KILLED"


def test_two_workers_complete_exactly_the_requested_trials(tmp_path):
    study_file = write_study(tmp_path, name="parallel", n_trials=4, **{"confirm.seeds": 0})
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = harness("study", study_file, "--workdir", workdir, "--workers", 2, "--no-export").stdout
    assert out.count("training teacher member 0") == 1
    assert "database is locked" not in out
    study = load_study(workdir, "parallel")
    assert [t.state for t in study.trials] == [TS.COMPLETE] * 4
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    roles = runs_by_role(mlflow_client(workdir), "parallel")
    trial_runs = roles["trial"]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trial_runs) == [0, 1, 2, 3]
    assert len(roles["teacher"]) == 1
    assert {r.info.status for r in trial_runs} == {"FINISHED"}
    # each width's baseline is trained once even with two workers asking for it
    widths = [r.data.tags["width"] for r in roles["baseline"]]
    assert len(widths) == len(set(widths))


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, smoke_teacher_cache):
    study_file = write_study(tmp_path, name="diverge", n_trials=2,
                             **{"training.optimizer": "sgd", "training.learning_rate": 1.0e30})
    workdir = workdir_with_teacher(tmp_path / "work", smoke_teacher_cache)
    out = harness("study", study_file, "--workdir", workdir).stdout
    study = load_study(workdir, "diverge")
    assert [t.state for t in study.trials] == [TS.FAIL, TS.FAIL]  # both ran: the study went on
    for t in study.trials:
        assert "training loss became" in t.user_attrs["fail_reason"]
        assert t.user_attrs["epochs_run"] == 0  # stopped inside the first epoch
    client, runs = _runs(workdir, "diverge")
    trial_runs = [r for r in runs if r.data.tags.get("harness.role") == "trial"]
    assert len(trial_runs) == 2
    for r in trial_runs:
        assert r.info.status == "FAILED" and "training loss became" in r.data.tags["fail_reason"]
    assert "failed" in out
