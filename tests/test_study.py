"""The smoke study end to end, through the command line, on real stores."""

import subprocess
import sys

import numpy as np
import pytest

from harness import champion, config, confirm
from harness.record import TrialRecord
from helpers import SMOKE, harness, load_study, mlflow_client, runs_by_role


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    first = harness("study", SMOKE, "--workdir", workdir)
    return workdir, first


def test_mlflow_holds_every_run_with_metrics_and_artifacts(smoke):
    workdir, _ = smoke
    client = mlflow_client(workdir)
    roles = runs_by_role(client, "smoke")
    (parent,) = roles["study"]
    assert parent.info.status == "FINISHED"
    assert len(roles["trial"]) == 3 and len(roles["teacher"]) == 1
    widths = {r.data.params["width"] for r in roles["trial"]}
    assert {r.data.tags["width"] for r in roles["baseline"]} == widths
    for r in roles["trial"] + roles["teacher"] + roles["baseline"]:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
    trial = roles["trial"][0]
    assert {"temperature", "alpha", "width", "epochs", "learning_rate"} <= set(trial.data.params)
    assert {"val_accuracy", "params", "flops", "distillation_gain"} <= set(trial.data.metrics)
    assert trial.data.tags["state"] == "complete" and trial.data.tags["optuna.study"] == "smoke"
    history = client.get_metric_history(trial.info.run_id, "soft_loss")
    assert [m.step for m in history] == [0, 1]
    assert len(client.get_metric_history(trial.info.run_id, "val_accuracy")) == 2
    assert parent.data.params["precision"] == "float32" and parent.data.params["precision_setting"] == "float32"
    assert parent.data.metrics["train_flops"] > 0 and trial.data.params["precision"] == "float32"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "trials.csv", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/pareto_front.png", "plots/temperature_alpha.png", "plots/optimization_history.png",
            "plots/param_importances.png"} <= plots


def test_champion_is_registered_tested_and_exported(smoke, tmp_path):
    workdir, first = smoke
    client = mlflow_client(workdir)
    version = client.get_model_version_by_alias("smoke-student", "champion")
    run = client.get_run(version.run_id)
    assert run.data.tags["harness.role"] == "trial"
    assert 0.0 < run.data.metrics["test_accuracy"] <= 1.0
    export = workdir / "exports" / "smoke-champion"
    assert f"SavedModel: {export}" in first.stdout
    study = load_study(workdir)
    champ = TrialRecord.from_trial(study.trials[int(version.tags["optuna.trial"])])

    import keras

    student = keras.models.load_model(champ.model_path)
    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", student.predict(x, verbose=0))
    code = ("import sys, numpy as np, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1]); x = np.load(sys.argv[2])\n"
            "sig = m.signatures['serving_default'].structured_input_signature[1]\n"
            "spec = next(iter(sig.values())); assert spec.shape.as_list() == [None, 28, 28, 1], spec\n"
            "assert spec.dtype == tf.float32\n"
            "print(np.abs(m.serve(x).numpy() - np.load(sys.argv[3])).max())")
    out = subprocess.run([sys.executable, "-c", code, export, tmp_path / "x.npy", tmp_path / "want.npy"],
                         capture_output=True, text=True, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) <= 1e-5




def test_confirmation_pairs_every_front_configuration_over_fresh_seeds(smoke, tmp_path):
    import csv
    import json

    workdir, first = smoke
    client = mlflow_client(workdir)
    roles = runs_by_role(client, "smoke")
    (parent,) = roles["study"]
    client.download_artifacts(parent.info.run_id, "confirm", str(tmp_path))
    with open(tmp_path / "confirm" / "confirm.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["trial", "width", "params", "temperature", "alpha", "seed", "role", "val_accuracy",
                             "test_accuracy", "agreement", "ece"]
    on_front = champion.front(load_study(workdir), config.load(SMOKE))
    front = {r.number for r in confirm.configurations(load_study(workdir), config.load(SMOKE))}
    assert {int(r["trial"]) for r in rows} == front
    # every width on the Pareto front is confirmed once (equal-width ties are one question)
    assert sorted({int(r["width"]) for r in rows if r["seed"] == "1" and r["role"] == "scratch"}) == \
        sorted({r.width for r in on_front}) and len(front) == len({r.width for r in on_front})
    for t in front:  # each configuration: seeds 1 and 2 (never the search's seed 0), both arms
        got = sorted((int(r["seed"]), r["role"]) for r in rows if int(r["trial"]) == t)
        assert got == [(1, "distilled"), (1, "scratch"), (2, "distilled"), (2, "scratch")]
    summary = json.loads((tmp_path / "confirm" / "summary.json").read_text())
    assert {c["trial"] for c in summary["configurations"]} == front
    c = summary["configurations"][0]
    assert c["n"] == 2 and {"mean", "low", "high", "excludes_zero"} <= set(c["test_gain"])
    assert (tmp_path / "confirm" / "confirmed.png").stat().st_size > 10_000
    assert len(roles["confirm"]) == 4 * len(front)  # one MLflow run per row
    assert "confirmed over 2 seeds" in first.stdout and "paired" in first.stdout
    champ = int(client.get_model_version_by_alias("smoke-student", "champion").tags["optuna.trial"])
    picked = champion.select([confirm.Confirmed.from_dict(d) for d in summary["configurations"]],
                             config.load(SMOKE).champion)
    assert champ == picked.trial  # chosen on the confirmed validation means
    metrics = client.get_run(client.get_model_version_by_alias("smoke-student", "champion").run_id).data.metrics
    assert {f"test_accuracy_class_{k}" for k in range(10)} <= set(metrics)


def test_report_and_export_read_the_stores(smoke, tmp_path):
    workdir, _ = smoke
    report = harness("report", SMOKE, "--workdir", workdir).stdout
    assert "Pareto front" in report and "<- champion" in report and "teacher:" in report
    assert "confirmed over 2 seeds" in report
    out = tmp_path / "trial0"
    exported = harness("export", SMOKE, "--workdir", workdir, "--trial", 0, "--out", out).stdout
    assert (out / "saved_model.pb").exists() and str(out) in exported


def test_resume_adds_exactly_one_trial_without_training_the_teacher(smoke):
    workdir, _ = smoke
    before = len(load_study(workdir).trials)
    cache_entries = sorted(p.name for p in (workdir / "teacher_cache").iterdir())
    again = harness("study", SMOKE, "--workdir", workdir, "--n-trials", 1)
    assert len(load_study(workdir).trials) == before + 1
    assert "training teacher" not in again.stdout and "loaded from cache" in again.stdout
    assert sorted(p.name for p in (workdir / "teacher_cache").iterdir()) == cache_entries
    roles = runs_by_role(mlflow_client(workdir), "smoke")
    assert len(roles["teacher"]) == 1 and len(roles["study"]) == 2 and len(roles["trial"]) == before + 1
