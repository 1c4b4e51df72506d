"""`TrialRecord`: the one schema of what a trial stores in Optuna's `user_attrs`.

The trial writes it; the champion rule, the report, the plots and the bench
read it back with `from_trial`, never by raw string keys. A field is stored
only once it is known (a pruned trial has no `model_uri`), so every field but
`number` may be None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import optuna

from harness.distill import methods

FIXED = "fixed_"  # the user attr prefix of a parameter the file fixes instead of searching


@dataclass
class TrialRecord:
    number: int | None = None  # Optuna's trial number (not stored: Optuna has it)
    temperature: float | None = None  # suggested parameters (not stored: Optuna has them)
    alpha: float | None = None
    width: int | None = None
    depth: int | None = None  # only when the search suggests it (search.depth; else student.depth)
    learning_rate: float | None = None  # only when the search suggests it (else the file's)
    epochs: int | None = None  # likewise
    method: str | None = None  # a registered method's name; None: kd (a study that neither searches nor sets it)
    # The method's own parameters by their outside names (`dkd_beta`; distill/methods/), its trials only
    # (suggested, or fixed by the file): not stored (Optuna has them).
    own: dict | None = None
    mlflow_run_id: str | None = None
    val_accuracy: float | None = None
    params: int | None = None
    flops: int | None = None
    latency_ms: float | None = None  # float TFLite, one image, one thread, median (when an objective)
    size_bytes: int | None = None  # the float TFLite file (when an objective)
    distillation_gain: float | None = None  # val accuracy minus that of the scratch twin (one seed)
    # The scratch twin's accuracies (one seed). Stored under these user-attr names, which every stored
    # study and its trials.csv columns hold; in code and MLflow the concept is the twin.
    baseline_val_accuracy: float | None = None
    baseline_test_accuracy: float | None = None
    model_uri: str | None = None  # the logged model in MLflow
    model_path: str | None = None  # the same student as a local .keras file
    epochs_run: int | None = None
    fit_seconds: float | None = None  # the distilled student's `fit` (what the confirmation's estimate reads)
    fail_reason: str | None = None
    diverged: str | None = None  # set (with the reason) when the loss became NaN or infinite

    SUGGESTED = ("temperature", "alpha", "width", "depth", "learning_rate", "epochs", "method")

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial) -> "TrialRecord":
        stored = {f.name: trial.user_attrs.get(f.name) for f in fields(cls) if f.name in cls._stored()}

        def value(k):  # a parameter the file fixes (alpha with transfer.labels: false) is a `fixed_` user attr
            return trial.params.get(k, trial.user_attrs.get(FIXED + k))

        suggested = {k: value(k) for k in cls.SUGGESTED}
        name = suggested["method"] or methods.DEFAULT
        own = {k: value(k) for k in methods.get(name).own_names()} if name in methods.names() else {}
        return cls(number=trial.number, **suggested, own={k: v for k, v in own.items() if v is not None} or None,
                   **stored)

    @classmethod
    def _stored(cls) -> set[str]:
        return {f.name for f in fields(cls)} - {"number", "own", *cls.SUGGESTED}

    def to_attrs(self) -> dict:
        """The fields to store: those known, minus what Optuna keeps itself."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in self._stored() and v is not None}

    def save(self, trial: optuna.Trial) -> None:
        for k, v in self.to_attrs().items():
            trial.set_user_attr(k, v)

    @property
    def complete(self) -> bool:
        """Trained to the end and saved: something the champion rule may pick."""
        return self.model_path is not None and self.val_accuracy is not None


def complete_records(trials) -> list[TrialRecord]:
    """Records of the COMPLETE trials that hold a saved student."""
    out = [TrialRecord.from_trial(t) for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [r for r in out if r.complete]
