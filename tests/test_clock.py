"""The trial clock's arithmetic: what is training and what is overhead, by part."""

import types

from harness.training import clock as clock_module
from harness.training.clock import PARTS, TrialClock, overhead


def test_overhead_is_wall_time_outside_the_training_epochs_by_part():
    trials = [
        {"wall": 10.0, "fit": 8.0, "validation": 1.0, "mlflow_epoch": 0.5, "mlflow": 0.7, "optuna": 0.1},
        {"wall": 12.0, "fit": 9.0, "validation": 1.0, "mlflow_epoch": 0.5, "mlflow": 0.9, "saving": 0.2},
        {"wall": 11.0, "fit": 8.5, "validation": 1.5, "mlflow_epoch": 0.5, "build_compile": 0.4},
    ]
    o = overhead(trials)
    # training = fit - validation - mlflow_epoch: 6.5, 7.5, 6.5; outside = wall - training: 3.5, 4.5, 4.5
    assert o["training"] == 6.5 and o["total"] == 4.5
    assert o["validation"] == 1.0 and o["mlflow"] == 0.7 and o["saving"] == 0.0
    # 'other' is what no part names (validation and mlflow_epoch are parts): 3.5 - 2.3, 4.5 - 2.6,
    # 4.5 - 2.4 -> median 1.9
    assert abs(o["other"] - 1.9) < 1e-9
    # bookkeeping = outside - validation - evaluation: 2.5, 3.5, 3.0 -> median 3.0
    assert o["bookkeeping"] == 3.0
    assert {p: o[p] for p in PARTS} == {"build_compile": 0.0, "validation": 1.0, "mlflow": 0.7, "mlflow_epoch": 0.5,
                                       "mlflow_model": 0.0, "saving": 0.0, "evaluation": 0.0, "optuna": 0.0,
                                       "deployed_cost": 0.0}  # medians: a part a trial lacks counts 0
    assert overhead([]) == {}


def test_parts_count_only_inside_a_trial_and_the_gap_between_trials_is_optuna_s(monkeypatch):
    now = iter([10.0, 11.0, 13.5, 15.0, 17.0, 18.0])  # perf_counter at each call, in order
    monkeypatch.setattr(clock_module, "time", types.SimpleNamespace(perf_counter=lambda: next(now)))
    clock = TrialClock()
    clock.add("mlflow", 5.0)  # outside a trial (a confirmation run): not counted
    clock.begin()  # 10
    clock.add("mlflow", 1.0)
    with clock.part("saving"):  # 11 to 13.5
        pass
    clock.end()  # 15
    clock.begin()  # 17: the 2 s since the last trial ended were Optuna's
    clock.end()  # 18
    first, second = clock.trials
    assert first == {"mlflow": 1.0, "saving": 2.5, "wall": 5.0}
    assert second == {"optuna": 2.0, "wall": 3.0}


def test_a_runs_bookkeeping_is_batched_and_its_curves_and_params_arrive(tmp_path):
    """`tracking.log_run` (params, metrics, tags: one request) and the per-epoch callback: what the
    MLflow UI shows of a run, per-epoch steps included, and the callback's time on the clock."""
    import keras
    import numpy as np
    from mlflow.tracking import MlflowClient

    from harness import tracking
    from harness.training.clock import TimedMlflowCallback

    exp = tracking.setup(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, "bookkeeping")
    clock = TrialClock()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32), np.arange(64) % 3
    with tracking.start("trial", "t", experiment_id=exp) as run:
        tracking.log_run(params={"width": 16, "temperature": 2.5}, metrics={"params": 15}, tags={"state": "x"})
        clock.begin()
        model.fit(x, y, epochs=3, verbose=0, callbacks=[TimedMlflowCallback(clock)])
        clock.end()
        tracking.log_curves({"loss": [3.0, 2.0], "val_accuracy": [0.1, 0.5]})  # a population member's, later
    data = MlflowClient().get_run(run.info.run_id).data
    assert {k: data.params[k] for k in ("width", "temperature")} == {"width": "16", "temperature": "2.5"}
    assert data.params["optimizer_name"] == "adam" and data.tags["state"] == "x" and data.metrics["params"] == 15
    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == [0, 0, 1, 1, 2]  # three epochs, then the curve logged after
    (val,) = MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert (val.step, val.value) == (1, 0.5)  # validated once, at the last epoch
    assert clock.trials[0]["mlflow_epoch"] > 0
