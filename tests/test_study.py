"""The smoke study end to end, through the command line, on real stores."""

import subprocess
import sys

import mlflow
import numpy as np
import pytest
from helpers import (
    SMOKE,
    cli,
    harness,
    load_study,
    mlflow_client,
    run_cli,
    runs_by_role,
    workdir_with_teacher,
    write_study,
)

from harness import config
from harness.confirm import confirmation as confirm
from harness.deploy import champion, export as export_mod
from harness.record import TrialRecord


# One process runs this module's tests (`make test` uses --dist loadfile: xdist's loadgroup does not
# group under pytest 9.2, pytest-xdist issue 1386), so they share the study below.
@pytest.fixture(scope="module")
def smoke(tmp_path_factory, smoke_teacher_cache):
    workdir = workdir_with_teacher(tmp_path_factory.mktemp("smoke"), smoke_teacher_cache)
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
    assert {r.data.tags["width"] for r in roles["twin"]} == widths
    for r in roles["trial"] + roles["teacher"] + roles["twin"]:
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
    trial = roles["trial"][0]
    # the run holds the trial's own values: what Optuna suggested and what the trial measured
    record = TrialRecord.from_trial(load_study(workdir).trials[int(trial.data.tags["optuna.trial"])])
    cfg = config.load(SMOKE)
    assert {k: trial.data.params[k] for k in ("temperature", "alpha", "width", "epochs", "learning_rate")} == \
        {"temperature": str(record.temperature), "alpha": str(record.alpha), "width": str(record.width),
         "epochs": str(cfg.training.epochs), "learning_rate": str(cfg.training.learning_rate)}
    assert {k: trial.data.metrics[k] for k in ("val_accuracy", "params", "flops", "distillation_gain")} == \
        {"val_accuracy": record.val_accuracy, "params": record.params, "flops": record.flops,
         "distillation_gain": pytest.approx(record.val_accuracy - record.baseline_val_accuracy, abs=1e-9)}
    assert trial.data.tags["state"] == "complete" and trial.data.tags["optuna.study"] == "smoke"
    assert trial.data.metrics["twin_val_accuracy"] == record.baseline_val_accuracy
    assert {r.info.run_name for r in roles["twin"]} == {f"twin-w{w}-s{cfg.seed}" for w in widths}
    history = client.get_metric_history(trial.info.run_id, "soft_loss")
    assert [m.step for m in history] == [0, 1]
    assert len(client.get_metric_history(trial.info.run_id, "val_accuracy")) == 2
    assert parent.data.params["precision"] == "float32" and parent.data.params["precision_setting"] == "float32"
    assert parent.data.metrics["train_flops"] > 0 and trial.data.params["precision"] == "float32"
    # what the study shared the machine with, beside its wall time: the CPU times read around the whole run
    m = parent.data.metrics
    assert 0 <= m["cpu_steal_pct"] <= 100 and 0 <= m["cpu_others_pct"] <= 100 and m["cpu_own_pct"] > 0
    for r in roles["trial"]:  # and each trial, its twin included, in its run's last request
        assert 0 <= r.data.metrics["cpu_steal_pct"] <= 100 and 0 <= r.data.metrics["cpu_others_pct"] <= 100
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "trials.csv", "plots"} <= artifacts
    # MLflow models: the front's students only (logged at the end from their .keras files), and loadable
    front = {r.number for r in champion.front(load_study(workdir), cfg)}
    for r in roles["trial"]:
        uri = r.data.tags.get(champion.MODEL_URI_TAG)
        assert (uri is not None) == (int(r.data.tags["optuna.trial"]) in front)
    uri = next(r.data.tags[champion.MODEL_URI_TAG] for r in roles["trial"] if champion.MODEL_URI_TAG in r.data.tags)
    assert mlflow.keras.load_model(uri).count_params() > 0
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/pareto_front.png", "plots/temperature_alpha.png", "plots/optimization_history.png",
            "plots/param_importances.png"} <= plots


def test_champion_is_registered_tested_and_exported(smoke, tmp_path):
    workdir, first = smoke
    client = mlflow_client(workdir)
    version = client.get_model_version_by_alias("smoke-student", "champion")
    run = client.get_run(version.run_id)
    # the distilled student, on its trial's run; or, where the confirmation found its scratch twin
    # significantly better (as on one CI machine), the twin, on its own confirmation run
    trained_as = version.tags["harness.trained_as"]
    assert run.data.tags["harness.role"] == {"distilled": "trial", "scratch": "confirm"}[trained_as]
    export = workdir / "exports" / "smoke-champion"
    assert f"SavedModel: {export}" in first.stdout
    # the browse line names this workdir's stores, as commands that work outside the checkout too
    assert (f"mlflow ui --backend-store-uri sqlite:///{workdir.resolve()}/mlflow.db" in first.stdout
            and f"optuna-dashboard sqlite:///{workdir.resolve()}/optuna.db" in first.stdout)
    study = load_study(workdir)

    from harness.data import evaluate, sources

    student = mlflow.keras.load_model(f"models:/smoke-student/{version.version}")  # what was registered
    cfg = config.load(SMOKE)
    test = sources.load_splits(cfg.dataset, cfg.seed).test
    # the registered test accuracy is the champion's own, on the whole test split, and per class
    pred = evaluate.predict_logits(student, test.images).argmax(-1)
    assert run.data.metrics["test_accuracy"] == pytest.approx(np.mean(pred == test.labels), abs=1e-12)
    assert [run.data.metrics[f"test_accuracy_class_{k}"] for k in range(10)] == \
        pytest.approx([np.mean(pred[test.labels == k] == k) for k in range(10)], abs=1e-12)
    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", student.predict(x, verbose=0))
    code = ("import sys, numpy as np, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1]); x = np.load(sys.argv[2]); want = np.load(sys.argv[3])\n"
            "for key, dtype in (('serving_default', tf.float32), ('serve_uint8', tf.uint8)):\n"
            "    spec = next(iter(m.signatures[key].structured_input_signature[1].values()))\n"
            "    assert spec.shape.as_list() == [None, 28, 28, 1] and spec.dtype == dtype, (key, spec)\n"
            "u8 = next(iter(m.signatures['serve_uint8'](tf.constant(x.astype(np.uint8))).values())).numpy()\n"
            "print(np.abs(m.serve(x).numpy() - want).max(), np.abs(u8 - want).max())")
    out = subprocess.run([sys.executable, "-c", code, export, tmp_path / "x.npy", tmp_path / "want.npy"],
                         capture_output=True, text=True, check=True)
    assert all(float(v) <= 1e-5 for v in out.stdout.strip().splitlines()[-1].split())  # float32 and uint8 alike
    # the TFLite files: figures on the champion's run; an int8 file refused by its check is not there
    for kind, path in champion.export_paths(config.load(SMOKE), workdir / "exports").items():
        prefix, tag = kind.replace("-", "_"), run.data.tags[f"export.{kind}"]
        if kind == "tflite-int8" and tag != "ok":
            assert "top-1 agreement" in tag and not path.exists()
            continue
        assert tag == "ok" and path.exists()
        assert run.data.metrics[f"{prefix}_size_bytes"] == export_mod.size_bytes(path)
        assert run.data.metrics[f"{prefix}_latency_p50_ms"] > 0  # timed for real
        assert abs(run.data.metrics[f"{prefix}_test_accuracy"] - run.data.metrics["test_accuracy"]) < 0.02
    assert {a.path for a in client.list_artifacts(version.run_id, "exports")} >= \
        {"exports/smoke-champion", "exports/smoke-champion.tflite"}
    assert study.metric_names == ["val_accuracy", "params"]
    assert {"values_val_accuracy", "values_params"} <= set(study.trials_dataframe().columns)




# What libraries print while setting up, kept out of the default console (harness/logs.py); each
# of these was in the smoke study's console before.
NOISE = ("triggered tf.function retracing", "fully_quantize", "Creating initial MLflow database tables",
         "All log messages before absl::InitializeLog()", "oneDNN custom operations are on")


def test_the_default_console_carries_no_library_set_up_lines(smoke):
    _, first = smoke
    console = first.stdout + first.stderr
    for noise in NOISE:
        assert noise not in console, noise
    assert "%|" not in console  # no progress bar where stderr is no terminal
    assert "trial   2 complete" in first.stdout and "confirm 4/4" in first.stdout
    done = next(line for line in first.stdout.splitlines() if line.startswith("study 'smoke' done in"))
    assert "of the CPU stolen by other guests" in done and "used by other processes" in done


def test_verbose_brings_the_library_lines_back(smoke_teacher_cache, tmp_path):
    workdir = workdir_with_teacher(tmp_path, smoke_teacher_cache)  # a fresh MLflow store: its set-up shows
    loud = harness("teacher", SMOKE, "--workdir", workdir, "-v")
    console = loud.stdout + loud.stderr
    for noise in ("Creating initial MLflow database tables", "All log messages before absl::InitializeLog()",
                  "oneDNN custom operations are on"):
        assert noise in console, noise
    assert console.count("oneDNN custom operations are on") == 2  # two of TensorFlow's libraries


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
                             "test_accuracy", "agreement", "ece", "transfer_examples"]
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
    diffs = {int(r["seed"]): float(r["test_accuracy"]) * (1 if r["role"] == "distilled" else -1)
             for r in rows if int(r["trial"]) == c["trial"] and r["role"] == "scratch"}
    for r in rows:
        if int(r["trial"]) == c["trial"] and r["role"] == "distilled":
            diffs[int(r["seed"])] += float(r["test_accuracy"])
    g, (d1, d2) = c["test_gain"], diffs.values()  # paired by seed: the two seeds' differences
    assert c["n"] == 2 and g["mean"] == pytest.approx((d1 + d2) / 2, abs=1e-12)
    assert g["high"] - g["mean"] == pytest.approx(12.7062047 * abs(d1 - d2) / 2, abs=1e-9)  # t(0.975, 1 dof)
    assert (tmp_path / "confirm" / "confirmed.png").stat().st_size > 10_000
    assert len(roles["confirm"]) == 4 * len(front)  # one MLflow run per row
    assert "confirmed over 2 seeds" in first.stdout and "paired" in first.stdout
    champ = int(client.get_model_version_by_alias("smoke-student", "champion").tags["optuna.trial"])
    picked = champion.select([confirm.Confirmed.from_dict(d) for d in summary["configurations"]],
                             config.load(SMOKE).champion)
    assert champ == picked.trial  # chosen on the confirmed validation means


def test_report_and_export_read_the_stores(smoke, tmp_path, capsys):
    workdir, _ = smoke
    _, report, _ = run_cli(["report", SMOKE, "--workdir", workdir], capsys)  # in process: no new interpreter
    assert "Pareto front" in report and "<- champion" in report and "teacher:" in report
    assert "confirmed over 2 seeds" in report
    out = tmp_path / "trial0.tflite"
    code, exported, _ = run_cli(["export", SMOKE, "--workdir", workdir, "--trial", 0, "--format", "tflite",
                                 "--out", out], capsys)
    assert code == 0
    assert out.is_file() and f"TFLite (float32): {out}" in exported and "p99" in exported
    run = mlflow_client(workdir).get_run(TrialRecord.from_trial(load_study(workdir).trials[0]).mlflow_run_id)
    assert run.data.metrics["tflite_size_bytes"] == out.stat().st_size


def test_resume_adds_exactly_one_trial_without_training_the_teacher(smoke):
    workdir, _ = smoke
    before = len(load_study(workdir).trials)
    cache_entries = sorted(p.name for p in (workdir / "teacher_cache").iterdir())
    # in process (TensorFlow's start-up lines under -v: test_verbose_brings_the_library_lines_back)
    again = cli("study", SMOKE, "--workdir", workdir, "--n-trials", 1, "--no-export", "-v")
    assert len(load_study(workdir).trials) == before + 1
    assert "training teacher" not in again.stdout and "loaded from cache" in again.stdout
    assert sorted(p.name for p in (workdir / "teacher_cache").iterdir()) == cache_entries
    roles = runs_by_role(mlflow_client(workdir), "smoke")
    assert len(roles["teacher"]) == 1 and len(roles["study"]) == 2 and len(roles["trial"]) == before + 1


def test_latency_as_an_objective_next_to_accuracy(smoke, tmp_path):
    """In process, on the smoke study's stores (its teacher cached): two trials that minimise
    the float TFLite student's single-image latency; names, front, champion, report, datasets."""
    from harness import study as study_mod
    from harness.report import tables as report
    from harness.search import stores

    workdir, _ = smoke
    cfg = config.load(write_study(tmp_path, "smoke_latency", objectives=["val_accuracy", "latency_ms"], n_trials=2,
                                  **{"confirm.seeds": 0, "search.width": {"choices": [16]}}))
    calls = []
    result = study_mod.run(cfg, workdir, export=False, progress=lambda *a: calls.append(a))
    assert calls == [("search", 0, 2), ("search", 1, 2), ("search", 2, 2)]  # what the progress bar hears
    study = result.study
    assert study.metric_names == ["val_accuracy", "latency_ms"]
    assert {"values_val_accuracy", "values_latency_ms"} <= set(study.trials_dataframe().columns)
    records = [TrialRecord.from_trial(t) for t in study.trials]
    for t, r in zip(study.trials, records):
        assert t.values == [r.val_accuracy, r.latency_ms] and 0 < r.latency_ms < 50
        assert r.size_bytes > 4 * r.params  # float32 weights and the graph
    assert records[0].latency_ms == records[1].latency_ms  # one width: measured once, by the first trial
    front = champion.front(study, cfg)
    assert result.champion.number == champion.select(front, cfg.champion, lambda r: r.latency_ms).number
    table = report.table(cfg, stores.Workspace.resolve(workdir, None, None))
    assert "val accuracy vs latency_ms" in table and " ms " in table
    client = mlflow_client(workdir)
    for run_id in (records[0].mlflow_run_id, result.parent_run_id):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        got = {(i.dataset.name, {t.key: t.value for t in i.tags}["mlflow.data.context"]) for i in inputs}
        assert got == {("fashion_mnist-transfer", "training"), ("fashion_mnist-validation", "validation"),
                       ("fashion_mnist-test", "test")}
        assert all(len(i.dataset.digest) == 16 for i in inputs)


def test_serving_the_registered_champion_over_rest(smoke):
    """`mlflow models serve` on loopback, started as the README says (the venv's bin/ on PATH:
    MLflow starts uvicorn by name); one REST prediction equals the student's."""
    import json
    import os
    import socket
    import time
    import urllib.request
    from pathlib import Path

    workdir, _ = smoke
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/smoke-student@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: uvicorn, its child, is stopped with it
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the server exited {proc.returncode}: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the server did not answer /ping within 120 s"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        x = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1)).astype(np.float32)
        req = urllib.request.Request(f"{url}/invocations", data=json.dumps({"inputs": x.tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            got = np.asarray(json.loads(r.read())["predictions"], dtype=np.float32)
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    version = mlflow_client(workdir).get_model_version_by_alias("smoke-student", "champion")
    want = mlflow.keras.load_model(f"models:/smoke-student/{version.version}").predict(x, verbose=0)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
