"""Pick the champion by the study's rule, test it once, register it in MLflow, export it."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import keras
import mlflow
import numpy as np
import optuna
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from harness import registry
from harness.config import ChampionConfig, StudyConfig
from harness.data import omitted, sources
from harness.data.evaluate import accuracy, predict_logits
from harness.deploy import compression, export as export_mod, tflite
from harness.deploy.export import ExportError
from harness.distill import builder
from harness.record import TrialRecord, complete_records

log = logging.getLogger(__name__)
ALIAS = "champion"
MODEL_URI_TAG = "harness.model_uri"  # on a trial's run: its student logged as an MLflow model
C = TypeVar("C")  # anything with `val_accuracy` and `params`


def select(candidates: Sequence[C], rule: ChampionConfig, cost: Callable[[C], float] | None = None,
           teacher_val: float | None = None, source: str = "") -> C | None:
    """`smallest_within`: the cheapest candidate within `tolerance` points of the best
    validation accuracy (ties: the more accurate); `best`: the most accurate (ties: the cheaper);
    `within_teacher`: the cheapest within `tolerance` points of `teacher_val` (the teacher's
    validation accuracy), or None (`deploy/compression.py`; ConfigError naming `source` without it).
    Cheapest: by `cost` (the study's second objective), by parameters when not given."""
    if not candidates:
        return None
    if rule.rule == "within_teacher":
        return compression.within_teacher(candidates, rule.tolerance, teacher_val, cost, source)
    cost = cost or (lambda c: c.params)
    if rule.rule == "best":
        return max(candidates, key=lambda c: (c.val_accuracy, -cost(c)))
    best = max(c.val_accuracy for c in candidates)
    within = [c for c in candidates if c.val_accuracy >= best - rule.tolerance / 100]
    return min(within, key=lambda c: (cost(c), -c.val_accuracy))


def cost_of(cfg: StudyConfig, records: Sequence[TrialRecord]) -> Callable:
    """The study's cost (its second objective) of a record, or of a confirmed configuration
    (which has the search trial's number)."""
    by_trial = {r.number: r for r in records}
    return lambda c: getattr(by_trial.get(getattr(c, "trial", None), c), cfg.cost)


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


def load_student(record: TrialRecord, cfg: StudyConfig | None = None) -> keras.Model:
    """The trial's saved student: its local `.keras` file, or, trained on another machine, its
    logged model from MLflow (only the front's and the champion's are logged: `model_uri`). With a user's builder (`cfg.student.builder`), its module is imported
    first, so the custom layers it registers load."""
    if cfg is not None and cfg.student.builder is not None:
        builder.resolve(cfg.student.builder, cfg.source)
    if record.model_path and Path(record.model_path).exists():
        return keras.models.load_model(record.model_path, safe_mode=True, compile=False)
    uri = logged_uri(record)
    if uri is None:
        raise ExportError(f"trial {record.number}'s student {record.model_path} is not on this machine, and only "
                          f"the front's and the champion's are logged to MLflow: export it where it was trained")
    return mlflow.keras.load_model(uri)


def registered_trial(cfg: StudyConfig) -> int | None:
    """The trial number of the registered champion (None: none registered)."""
    v = current(cfg)
    if v is None:
        return None
    return int(v.tags["optuna.trial"]) if "optuna.trial" in v.tags else None


def logged_uri(record: TrialRecord) -> str | None:
    """The trial's student as an MLflow model, if it was logged (`model_uri`), else None."""
    if record.model_uri:  # a trial of a study run before only the front's students were logged
        return record.model_uri
    return MlflowClient().get_run(record.mlflow_run_id).data.tags.get(MODEL_URI_TAG)


def model_uri(cfg: StudyConfig, record: TrialRecord, class_names: list[str] | None = None) -> str:
    """The trial's student as an MLflow model on the trial's own run: logged once, from its `.keras`
    file, the first time the front or the champion needs it (a trial saves the file but logs no
    model: it cost about 0.2 s a trial), and its URI kept as the run's tag `harness.model_uri`.

    Raises OSError (or Keras' ValueError) when the `.keras` file cannot be read."""
    uri = logged_uri(record)
    if uri:
        return uri
    student = load_student(record, cfg)
    with mlflow.start_run(run_id=record.mlflow_run_id, nested=True):
        uri = registry.log_student(student, None, class_names=class_names).model_uri
    MlflowClient().set_tag(record.mlflow_run_id, MODEL_URI_TAG, uri)
    return uri


def log_front_models(study: optuna.Study, cfg: StudyConfig, class_names: list[str] | None = None) -> list[str]:
    """Every Pareto-front student (two objectives) as an MLflow model on its trial's run; none for
    one objective, where the champion alone is logged (`test_and_register`). Returns their URIs."""
    if not cfg.multi_objective:
        return []
    return [model_uri(cfg, r, class_names) for r in front(study, cfg)]


def test_and_register(cfg: StudyConfig, record: TrialRecord, splits: sources.Splits) -> float:
    """Test accuracy of the champion (read once per champion, per class too) and the registry alias."""
    client = MlflowClient()
    name = registered_name(cfg.name)
    version = current(cfg)
    if version is not None and version.run_id == record.mlflow_run_id:
        metrics = client.get_run(record.mlflow_run_id).data.metrics
        if "test_accuracy" in metrics:
            log.info("champion unchanged (trial %d, version %s)", record.number, version.version)
            return metrics["test_accuracy"]
    student = load_student(record, cfg)
    logits = predict_logits(student, splits.test.images)
    test_acc = accuracy(logits, splits.test.labels)
    classes = cfg.transfer.omit_classes or []
    # test_accuracy, test_accuracy_class_K for every class; with omitted classes, their accuracy and
    # the same after the bias correction (corrected_*, its shift chosen on validation).
    metrics = (omitted.correct(student, splits, classes, logits).metrics() if classes
               else omitted.scores(logits, splits.test.labels, [], splits.num_classes))
    client.log_batch(record.mlflow_run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0)
                                                    for k, v in metrics.items()])
    uri = model_uri(cfg, record, splits.class_names)
    if classes:  # registered: the bias-corrected student, the model every export holds (`deployable`)
        fixed = omitted.corrected_model(student, classes, metrics["bias_shift"])
        with mlflow.start_run(run_id=record.mlflow_run_id, nested=True):  # logged on the trial's own run
            uri = registry.log_student(fixed, None, name="model_corrected").model_uri
    mv = registry.register_model(uri, name)
    client.set_registered_model_alias(name, ALIAS, mv.version)
    client.set_model_version_tag(name, mv.version, "optuna.trial", str(record.number))
    if splits.class_names:  # class id -> name, as a JSON list (also in the model's own metadata)
        client.set_model_version_tag(name, mv.version, "class_names", json.dumps(splits.class_names)[:5000])
    if classes:
        client.set_model_version_tag(name, mv.version, "harness.bias_shift", str(metrics["bias_shift"]))
        log.info("champion: omitted classes %s: test acc %.4f -> %.4f, on them %.4f -> %.4f after adding %+.2f "
                 "(chosen on validation) to their logit bias", classes, test_acc, metrics["corrected_test_accuracy"],
                 metrics["omitted_class_test_accuracy"], metrics["corrected_omitted_class_test_accuracy"],
                 metrics["bias_shift"])
    log.info("champion: trial %d, registered as %s version %s (alias %r), test acc %.4f", record.number,
             name, mv.version, ALIAS, test_acc)
    return test_acc


def deployable(cfg: StudyConfig, student: keras.Model, splits: sources.Splits) -> keras.Model:
    """The student to export: as trained, or with omitted classes bias-corrected (the shift chosen
    on validation, as `test_and_register` logged it)."""
    if cfg.transfer.omit_classes:
        fix = omitted.correct(student, splits, cfg.transfer.omit_classes)
        student = omitted.corrected_model(student, cfg.transfer.omit_classes, fix.shift)
    return student


def export_paths(cfg: StudyConfig, directory: Path) -> dict[str, Path]:
    """Where `study` puts each of the file's export formats."""
    names = {"savedmodel": f"{cfg.name}-champion", "tflite": f"{cfg.name}-champion.tflite",
             "tflite-int8": f"{cfg.name}-champion-int8.tflite"}
    return {kind: Path(directory) / names[kind] for kind in cfg.exports}


def check_data(cfg: StudyConfig, splits: sources.Splits) -> export_mod.CheckData:
    """Validation images compare, test images score, a seeded sample of the transfer set calibrates."""
    rng = np.random.default_rng(cfg.seed)
    n = min(tflite.CALIBRATION_IMAGES, len(splits.transfer))
    calibration = splits.transfer.images[np.sort(rng.choice(len(splits.transfer), n, replace=False))]
    return export_mod.CheckData(splits.validation.images[:2000], splits.test.images, splits.test.labels,
                                calibration, class_names=splits.class_names or None,
                                validation_labels=splits.validation.labels[:2000],
                                int8_max_drop=cfg.exports_int8_max_drop)


def export(cfg: StudyConfig, record: TrialRecord, outs: dict[str, Path], splits: sources.Splits,
           student: keras.Model | None = None) -> dict[str, dict]:
    """Export the trial's student in each format of `outs`, and log each file's test accuracy, size and
    single-image latency (p50, p99) and the file itself on the trial's MLflow run (a refused export:
    the reason, as the tag `export.FORMAT`)."""
    figures = export_mod.export(student or load_student(record, cfg), outs, check_data(cfg, splits))
    client = MlflowClient()
    for kind, f in figures.items():
        client.set_tag(record.mlflow_run_id, f"export.{kind}", f.get("refused", "ok")[:500])
        if "refused" in f:
            continue
        prefix = kind.replace("-", "_")
        for name in ("test_accuracy", "size_bytes", "p50_ms", "p99_ms", "agreement", "val_accuracy_drop"):
            metric = name.replace("p50", "latency_p50").replace("p99", "latency_p99")
            if name in f and (kind == "tflite-int8" or name not in ("agreement", "val_accuracy_drop")):
                client.log_metric(record.mlflow_run_id, f"{prefix}_{metric}", f[name])
        path = Path(f["path"])
        if path.is_dir():
            client.log_artifacts(record.mlflow_run_id, str(path), f"exports/{path.name}")
        else:
            client.log_artifact(record.mlflow_run_id, str(path), "exports")
    return figures


def export_trial(cfg: StudyConfig, study: optuna.Study, trial_number: int | None, out: str,
                 kind: str = "savedmodel") -> dict:
    """Export a trial's student (default: the registered champion, else the rule's pick) in one
    format; its figures are logged on the trial's run. Returns them (with the `path`).

    Raises `ExportError` when there is no such complete trial or the export is refused."""
    records = complete_records(study.trials)
    registered = None
    if trial_number is None:
        registered = current(cfg)
        trial_number = registered_trial(cfg)
        if trial_number is None:
            teacher_val = ((study.user_attrs.get("compression") or {}).get("teacher") or {}).get("val_accuracy")
            champ = select(front(study, cfg), cfg.champion, cost_of(cfg, records), teacher_val=teacher_val,
                           source=cfg.source)
            if champ is None:
                raise ExportError(f"{cfg.source}: the study has no complete trial to export")
            trial_number = champ.number
    records = [r for r in records if r.number == trial_number]
    if not records:
        raise ExportError(f"--trial {trial_number}: no complete trial with that number in study {cfg.name!r}")
    record = records[0]
    if registered is not None and registered.tags.get("harness.trained_as") == "scratch":
        # the registered champion is the trial's scratch twin (confirm/compression.py), on its own run: that
        # run's model, not the trial's distilled student, is what gets exported
        record = dataclasses.replace(record, mlflow_run_id=registered.run_id, model_path=None, model_uri=None)
    student = load_student(record, cfg)
    splits = sources.load_splits(cfg.dataset, cfg.seed, source=cfg.source)
    student = deployable(cfg, student, splits)  # bias-corrected where classes were omitted
    figures = export(cfg, record, {kind: Path(out)}, splits, student)[kind]
    if "refused" in figures:
        raise ExportError(figures["refused"])
    return figures
