"""After the confirmation: compression against the teacher, the champion by the study's rule, and
what is registered (the distilled student, or its scratch twin where that is significantly better).

- `figures`: the teacher's members and every confirmed configuration's search student converted to
  float TFLite and timed (`deploy/compression.py`); the teacher once per study and teacher key (kept in
  the study's `compression` user attr, which `harness report` reads back).
- `choose`: the rule on the confirmed validation means. Under `within_teacher` no configuration may
  qualify: one line says so, nothing is registered. Where the chosen configuration's scratch twin is
  significantly better on validation (paired interval of distilled - scratch below 0), the twin of the
  first confirmation seed (saved by `training/twin.py`) is what gets registered, tagged
  `harness.trained_as=scratch`; the line saying so is kept as the study's `champion_note`.
- `estimate`: before the confirmation, what it will train and about how long, from the search's
  measured `fit` seconds per epoch (`TrialRecord.fit_seconds`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna

from harness import registry
from harness.confirm.confirmation import Confirmed, arms, seeds
from harness.deploy import champion as champion_mod, compression, lineage
from harness.record import TrialRecord
from harness.training import clock, depth, twin as twin_mod
from harness.training.context import Context
from harness.training.run import recipe_of

log = logging.getLogger(__name__)


def figures(ctx: Context, study: optuna.Study, configs: list[TrialRecord], summary: list[Confirmed]) -> dict:
    """{"teacher": {test_accuracy, val_accuracy, key, cost}, "configs": {trial: cost}}, measured (the
    teacher only when its key is new to the study) and stored as the study's `compression` attr."""
    image = ctx.splits.validation.images[0].astype(np.float32)
    stored = study.user_attrs.get("compression") or {}
    teacher = stored.get("teacher")
    if not teacher or teacher.get("key") != ctx.teacher.key:
        log.info("measuring the teacher as a float TFLite file (once per study): size and 1-thread latency")
        teacher = {"key": ctx.teacher.key, "cost": compression.measure(ctx.teacher.members, image).to_dict()}
    teacher.update(test_accuracy=ctx.teacher.test_accuracy, val_accuracy=ctx.teacher.val_accuracy)
    by_trial = {r.number: r for r in configs}
    done = stored.get("configs", {})
    out = {}
    for c in summary:
        key = str(c.trial)
        if key not in out:
            r = by_trial[c.trial]
            out[key] = done.get(key) or {
                **compression.measure([champion_mod.load_student(r, ctx.cfg)], image).to_dict(), "depth": r.depth}
    result = {"teacher": teacher, "configs": out}
    study.set_user_attr("compression", result)
    return result


def lines(study: optuna.Study, summary: list[Confirmed]) -> list[str]:
    """The compression columns and the champion's note, as stored in the study (for the tables)."""
    stored = study.user_attrs.get("compression") or {}
    note = study.user_attrs.get("champion_note")
    return compression.table_lines(summary, stored.get("configs", {}), stored.get("teacher")) + ([note] if note else [])


def choose(ctx: Context, study: optuna.Study, configs: list[TrialRecord],
           summary: list[Confirmed]) -> tuple[TrialRecord | None, bool]:
    """The record to register by the study's rule on `summary` (None: nothing qualifies) and whether it
    is a scratch twin; the champion note (a no-qualifier line, a twin-better line, or none) is stored
    on the study."""
    cfg = ctx.cfg
    cost = champion_mod.cost_of(cfg, configs)
    study.set_user_attr("champion_note", None)
    pick = champion_mod.select(summary, cfg.champion, cost, teacher_val=ctx.teacher.val_accuracy)
    if pick is None:
        if cfg.champion.rule == "within_teacher" and summary:
            note = compression.none_line(summary, cfg.champion.tolerance, ctx.teacher.val_accuracy)
            log.info("%s", note)
            study.set_user_attr("champion_note", note)
        return None, False
    record = next(r for r in configs if r.number == pick.trial)
    if not compression.twin_better(pick):
        return record, False
    twin = _twin_record(ctx, record, pick.arm)
    note = compression.twin_line(pick) if twin is not None else (
        compression.twin_line(pick).split(";")[0] + "; its model was not saved (a twin trained before twins were "
        "kept), so the distilled student is registered")
    log.info("%s", note)
    study.set_user_attr("champion_note", note)
    return (twin, True) if twin is not None else (record, False)


def _twin_record(ctx: Context, r: TrialRecord, arm: str = "") -> TrialRecord | None:
    """The first confirmation seed's scratch twin of `r` (in confirmation arm `arm`) as a record the
    champion code registers and exports: its saved .keras file, logged as a model on the twin's own
    MLflow run. None: not saved."""
    actx = next((a for name, a, _ in arms(ctx) if name == arm), ctx)
    dctx = depth.context(actx, r.depth)
    seed = seeds(ctx.cfg)[0]
    target = twin_mod.path(ctx.ws.workdir, dctx.cfg, r.width, seed, recipe_of(dctx, r), dctx.together(),
                           data=ctx.splits.digest)
    twin = json.loads(target.read_text()) if target.exists() else {}
    path = twin.get("model_path")
    if not path or not Path(path).exists():
        return None
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    with mlflow.start_run(run_id=twin["mlflow_run_id"], nested=True):
        info = registry.log_student(model, None, class_names=ctx.splits.class_names)
        # on the twin's run, as on a trial's: `harness export` finds the registered twin's model by it
        mlflow.set_tag(champion_mod.MODEL_URI_TAG, info.model_uri)
    return dataclasses.replace(r, mlflow_run_id=twin["mlflow_run_id"], model_uri=info.model_uri, model_path=path,
                               val_accuracy=twin["val_accuracy"], params=twin["params"])


def register(ctx: Context, record: TrialRecord, scratch: bool = False) -> float:
    """Test once and register `record` (champion.test_and_register), then its lineage tags; returns the test
    accuracy."""
    test_acc = champion_mod.test_and_register(ctx.cfg, record, ctx.splits)
    mv = champion_mod.current(ctx.cfg)
    if mv is not None:
        tags = lineage.tags(ctx.cfg, ctx.teacher.key, ctx.splits.digest)
        tags["harness.trained_as"] = "scratch" if scratch else "distilled"
        registry.set_version_tags(mv.name, mv.version, tags)
        lineage.tag_teacher(ctx.cfg, f"models:/{mv.name}/{mv.version}")
    return test_acc


def estimate(ctx: Context, study: optuna.Study, configs: list[TrialRecord]) -> str:
    """What the confirmation will train and about how long, one run at a time (trained together as a
    population it takes less): each configuration's `fit` seconds per epoch in the search, plus a run's
    time outside training (model building, scoring, MLflow): the median per search trial of this
    process (`training/clock.py`; a trial that trained its twin counts both), else of a trial's wall time
    minus its distilled `fit`."""
    n_seeds, n_arms = len(seeds(ctx.cfg)), len(arms(ctx))
    if ctx.clock.trials:  # this process's search: seconds outside the training epochs, median per trial
        per_run = clock.overhead(ctx.clock.trials)["total"]
    else:  # a resumed study: a trial's wall time minus its distilled student's fit
        outside = [t.duration.total_seconds() - t.user_attrs["fit_seconds"] for t in study.trials
                   if t.duration is not None and t.user_attrs.get("fit_seconds")]
        per_run = max(0.0, float(np.median(outside))) if outside else 0.0
    total, parts = 0.0, []
    for r in configs:
        epochs = recipe_of(ctx, r).epochs
        per_epoch = (r.fit_seconds / r.epochs_run) if r.fit_seconds and r.epochs_run else None
        runs = 2 * n_seeds * n_arms  # distilled and scratch
        if per_epoch is not None:
            total += runs * (epochs * per_epoch + per_run)
        parts.append(f"trial {r.number} (width {r.width}" + (f", depth {r.depth}" if r.depth else "") +
                     f", {r.params:,} params): {runs} runs x {epochs} epochs" +
                     (f" at {per_epoch:.1f} s/epoch" if per_epoch is not None else " (no measured epoch time)"))
    return (f"confirmation: {len(configs)} configuration(s) x {n_seeds} seeds x {n_arms} arm(s), distilled and "
            f"scratch: " + "; ".join(parts) + f"; about {total / 60:.1f} min one run at a time (the search's epoch "
            f"times, plus {per_run:.0f} s a run outside training)")
