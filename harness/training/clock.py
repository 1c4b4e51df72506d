"""Where a trial's wall time goes: training epochs, and each part of what surrounds them.

`TrialClock` is told when a trial begins and ends, and the trial code wraps its
parts in `clock.part(name)`. Parts outside any trial (the confirmation's runs)
are not counted. The parts:

* fit            each `fit` call, whole (the distilled student's and a new twin's);
* validation     inside fit: the validation passes (`validation.Validation`);
* mlflow_epoch   inside fit: the per-epoch curves logged to MLflow (`TimedMlflowCallback`);
* build_compile  a fresh student and its compiled model (built, or re-armed);
* mlflow         runs started and ended, params, metrics, tags;
* mlflow_model   the student logged as an MLflow model (front and champion only, at the end);
* saving         the student's `.keras` file and the twin's JSON;
* evaluation     the twin's test-split scoring;
* optuna         suggestions and user attributes, and the gap since the previous
                 trial ended (Optuna's tell and ask, its callbacks, its gc).

Training epochs = fit - validation - mlflow_epoch; everything else in the
trial's wall time is overhead, and `other` is the overhead no part names.
`bookkeeping` is the overhead less the forward passes a trial asks for
(validation, the twin's test evaluation), which run at the cost of their
arithmetic (validation.py): what the harness adds around the arithmetic.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

from harness import tracking

PARTS = ("build_compile", "validation", "mlflow", "mlflow_epoch", "mlflow_model", "saving", "evaluation", "optuna",
         "deployed_cost")


class TrialClock:
    def __init__(self):
        self.trials: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None
        self._t0 = 0.0
        self._last_end: float | None = None

    def begin(self) -> None:
        now = time.perf_counter()
        self._current, self._t0 = defaultdict(float), now
        if self._last_end is not None:
            self._current["optuna"] += now - self._last_end
            self._current["wall"] += now - self._last_end

    def end(self) -> None:
        if self._current is None:
            return
        now = time.perf_counter()
        self._current["wall"] += now - self._t0
        self.trials.append(dict(self._current))
        self._current, self._last_end = None, now

    def add(self, name: str, seconds: float) -> None:
        if self._current is not None:
            self._current[name] += seconds

    @contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)


def overhead(trials: list[dict[str, float]]) -> dict:
    """Medians over trials: seconds outside the training epochs, in total (`total`), per part, and
    less the forward passes (`bookkeeping`); and the training epochs' (`training`)."""
    if not trials:
        return {}
    rows = []
    for t in trials:
        training = t.get("fit", 0.0) - t.get("validation", 0.0) - t.get("mlflow_epoch", 0.0)
        outside = t["wall"] - training
        row = {p: t.get(p, 0.0) for p in PARTS}
        row["other"] = outside - sum(row.values())
        row["total"], row["training"] = outside, training
        row["bookkeeping"] = outside - row["validation"] - row["evaluation"]
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


class TimedMlflowCallback(tracking.EpochMetrics):
    """The per-epoch curves of the active run (`tracking.EpochMetrics`), their time inside `fit` on
    the clock as `mlflow_epoch`."""

    def __init__(self, clock: TrialClock):
        super().__init__(clock=clock)
