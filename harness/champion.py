"""Pick the champion by the study's rule, test it once, register it in MLflow, export it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, TypeVar

import keras
import mlflow
import optuna
from mlflow.tracking import MlflowClient

from . import data as data_mod
from .config import ChampionConfig, StudyConfig
from .evaluate import accuracy, per_class_accuracy, predict_logits
from .export import export_saved_model
from .record import TrialRecord, complete_records

log = logging.getLogger(__name__)
ALIAS = "champion"
C = TypeVar("C")  # anything with `val_accuracy` and `params`


def select(candidates: Sequence[C], rule: ChampionConfig) -> C | None:
    """`smallest_within`: the smallest candidate within `tolerance` points of the best
    validation accuracy (ties: the more accurate); `best`: the most accurate (ties: the smaller)."""
    if not candidates:
        return None
    if rule.rule == "best":
        return max(candidates, key=lambda c: (c.val_accuracy, -c.params))
    best = max(c.val_accuracy for c in candidates)
    within = [c for c in candidates if c.val_accuracy >= best - rule.tolerance / 100]
    return min(within, key=lambda c: (c.params, -c.val_accuracy))


def front(study: optuna.Study, cfg: StudyConfig) -> list[TrialRecord]:
    """The Pareto front (two objectives) or all complete trials (one objective), as records."""
    trials = study.best_trials if cfg.multi_objective else study.trials
    return complete_records(trials)


def registered_name(study_name: str) -> str:
    """The MLflow registered model of a study's students: the one place this name is built."""
    return f"{study_name}-student"


def current(cfg: StudyConfig):
    """The model version the `champion` alias points to, or None."""
    try:
        return MlflowClient().get_model_version_by_alias(registered_name(cfg.name), ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def load_student(record: TrialRecord) -> keras.Model:
    return keras.models.load_model(record.model_path, safe_mode=True, compile=False)


def test_and_register(cfg: StudyConfig, record: TrialRecord, splits: data_mod.Splits) -> float:
    """Test accuracy of the champion (read once per champion, per class too) and the registry alias."""
    client = MlflowClient()
    name = registered_name(cfg.name)
    version = current(cfg)
    if version is not None and version.run_id == record.mlflow_run_id:
        metrics = client.get_run(record.mlflow_run_id).data.metrics
        if "test_accuracy" in metrics:
            log.info("champion unchanged (trial %d, version %s)", record.number, version.version)
            return metrics["test_accuracy"]
    logits = predict_logits(load_student(record), splits.test.images)
    test_acc = accuracy(logits, splits.test.labels)
    client.log_metric(record.mlflow_run_id, "test_accuracy", test_acc)
    for k, acc in enumerate(per_class_accuracy(logits, splits.test.labels, splits.num_classes)):
        client.log_metric(record.mlflow_run_id, f"test_accuracy_class_{k}", acc)
    mv = mlflow.register_model(record.model_uri, name)
    client.set_registered_model_alias(name, ALIAS, mv.version)
    client.set_model_version_tag(name, mv.version, "optuna.trial", str(record.number))
    log.info("champion: trial %d, registered as %s version %s (alias %r), test acc %.4f", record.number,
             name, mv.version, ALIAS, test_acc)
    return test_acc


def export(record: TrialRecord, out: Path, splits: data_mod.Splits) -> Path:
    return export_saved_model(load_student(record), out, splits.validation.images[:256])
