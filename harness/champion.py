"""Pick the champion from the Pareto front, test it once, register it, export it."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import mlflow
import optuna
from mlflow.tracking import MlflowClient

from . import data as data_mod
from .config import StudyConfig
from .export import export_saved_model
from .teacher import accuracy, predict_logits

log = logging.getLogger(__name__)
ALIAS = "champion"


def front(study: optuna.Study, cfg: StudyConfig) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front (two objectives) or all complete trials (one objective)."""
    if cfg.multi_objective:
        return list(study.best_trials)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def select(study: optuna.Study, cfg: StudyConfig) -> optuna.trial.FrozenTrial | None:
    """`smallest_within`: the smallest student within `tolerance` points of the best
    validation accuracy on the front; `best`: the most accurate one."""
    candidates = [t for t in front(study, cfg) if "model_path" in t.user_attrs]
    if not candidates:
        return None
    best = max(t.user_attrs["val_accuracy"] for t in candidates)
    if cfg.champion.rule == "best":
        return max(candidates, key=lambda t: (t.user_attrs["val_accuracy"], -t.user_attrs["params"]))
    within = [t for t in candidates if t.user_attrs["val_accuracy"] >= best - cfg.champion.tolerance / 100]
    return min(within, key=lambda t: (t.user_attrs["params"], -t.user_attrs["val_accuracy"]))


def registered_name(cfg: StudyConfig) -> str:
    return f"{cfg.name}-student"


def current(cfg: StudyConfig):
    """The model version the `champion` alias points to, or None."""
    try:
        return MlflowClient().get_model_version_by_alias(registered_name(cfg), ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def load_student(trial: optuna.trial.FrozenTrial) -> keras.Model:
    return keras.models.load_model(trial.user_attrs["model_path"], safe_mode=True, compile=False)


def test_and_register(cfg: StudyConfig, trial: optuna.trial.FrozenTrial, splits: data_mod.Splits) -> float:
    """Test accuracy of the champion (read once per champion) and the registry alias."""
    client = MlflowClient()
    run_id = trial.user_attrs["mlflow_run_id"]
    version = current(cfg)
    if version is not None and version.run_id == run_id:
        metrics = client.get_run(run_id).data.metrics
        if "test_accuracy" in metrics:
            log.info("champion unchanged (trial %d, version %s)", trial.number, version.version)
            return metrics["test_accuracy"]
    test_acc = accuracy(predict_logits(load_student(trial), splits.test.images), splits.test.labels)
    client.log_metric(run_id, "test_accuracy", test_acc)
    mv = mlflow.register_model(trial.user_attrs["model_uri"], registered_name(cfg))
    client.set_registered_model_alias(registered_name(cfg), ALIAS, mv.version)
    client.set_model_version_tag(registered_name(cfg), mv.version, "optuna.trial", str(trial.number))
    log.info("champion: trial %d, registered as %s version %s (alias %r), test acc %.4f", trial.number,
             registered_name(cfg), mv.version, ALIAS, test_acc)
    return test_acc


def export(cfg: StudyConfig, trial: optuna.trial.FrozenTrial, out: Path, splits: data_mod.Splits) -> Path:
    return export_saved_model(load_student(trial), out, splits.validation.images[:256])
