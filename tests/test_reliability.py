"""Parallel workers and a diverging trial, done for real on subprocesses (crashes: test_crash.py)."""

import re

import optuna
from helpers import cli, harness, load_study, mlflow_client, runs_by_role, workdir_with_teacher, write_study

TS = optuna.trial.TrialState


def _runs(workdir, name):
    client = mlflow_client(workdir)
    return client, [r for rs in runs_by_role(client, name).values() for r in rs]


def test_two_workers_complete_exactly_the_requested_trials(tmp_path):
    study_file = write_study(tmp_path, name="parallel", n_trials=4, **{"confirm.seeds": 0})
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = harness("study", study_file, "--workdir", workdir, "--workers", 2, "--no-export")
    out = proc.stdout
    assert out.count("training teacher member 0") == 1
    # the workers' lines come through this process (above its progress bar), each with its worker
    assert len(re.findall(r"\] trial +\d+ complete", out)) == 4 and "[worker 1] trial" in out and "[worker 2] trial" in out
    assert "oneDNN custom operations are on" not in proc.stderr  # nor their TensorFlow start-up lines
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
    widths = [r.data.tags["width"] for r in roles["twin"]]
    assert len(widths) == len(set(widths))


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, smoke_teacher_cache):
    study_file = write_study(tmp_path, name="diverge", n_trials=2,
                             **{"training.optimizer": "sgd", "training.learning_rate": 1.0e30})
    workdir = workdir_with_teacher(tmp_path / "work", smoke_teacher_cache)
    out = cli("study", study_file, "--workdir", workdir).stdout
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
