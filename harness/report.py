"""What a study found, read back from its stores: the Pareto table, the champion, exports."""

from __future__ import annotations

from pathlib import Path

import optuna

from .config import StudyConfig, UserError


class ReportError(UserError):
    pass


def _load(cfg: StudyConfig, ws):
    from . import study as study_mod

    s = study_mod.existing_study(cfg, ws)
    if s is None:
        raise ReportError(f"{cfg.source}: name: no study {cfg.name!r} in {ws.storage}; "
                          f"run `python -m harness study {cfg.source}` first")
    return s


def _champion_trial_number(cfg: StudyConfig, ws) -> int | None:
    from . import champion, tracking

    import mlflow

    mlflow.set_tracking_uri(tracking.internal_uri(ws.tracking_uri))
    v = champion.current(cfg)
    if v is None:
        return None
    return int(v.tags["optuna.trial"]) if "optuna.trial" in v.tags else None


def _teacher_line(cfg: StudyConfig) -> str:
    import mlflow

    from . import tracking

    exp = mlflow.get_experiment_by_name(cfg.name)
    runs = tracking.find_runs(exp.experiment_id, "teacher") if exp else []
    if not runs:
        return "teacher: not logged yet"
    m = runs[0].data.metrics
    return (f"teacher: {int(m.get('params', 0)):,} params, val acc {m.get('val_accuracy', float('nan')):.4f}, "
            f"test acc {m.get('test_accuracy', float('nan')):.4f}")


def rows(study: optuna.Study, cfg: StudyConfig) -> list[optuna.trial.FrozenTrial]:
    from .champion import front

    return sorted(front(study, cfg), key=lambda t: t.user_attrs.get("params", 0))


def table(cfg: StudyConfig, ws) -> str:
    study = _load(cfg, ws)
    champ = _champion_trial_number(cfg, ws)
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    title = "Pareto front (val accuracy vs parameters)" if cfg.multi_objective else "complete trials"
    lines = [f"study {cfg.name!r}: " + ", ".join(f"{n} {k}" for k, n in count.items()), _teacher_line(cfg),
             f"{title}:",
             f"{'trial':>5} {'width':>5} {'params':>9} {'T':>6} {'alpha':>5} {'val_acc':>7} "
             f"{'scratch':>7} {'gain':>7}"]
    for t in rows(study, cfg):
        a = t.user_attrs
        lines.append(f"{t.number:>5} {t.params['width']:>5} {a['params']:>9,} {t.params['temperature']:>6.2f} "
                     f"{t.params['alpha']:>5.2f} {a['val_accuracy']:>7.4f} {a['baseline_val_accuracy']:>7.4f} "
                     f"{100 * a['distillation_gain']:>+6.2f}p" + ("  <- champion" if t.number == champ else ""))
    if champ is None:
        lines.append("no champion registered yet")
    return "\n".join(lines)


def summary(cfg: StudyConfig, result) -> str:
    study, c = result.study, result.champion
    states = [t.state.name.lower() for t in study.trials]
    out = [f"study {cfg.name!r} done in {result.seconds / 60:.1f} min ({result.new_trials} new trial(s)); "
           f"trials: {states.count('complete')} complete, {states.count('pruned')} pruned, "
           f"{states.count('fail')} failed",
           f"teacher: {result.teacher.params:,} params, val acc {result.teacher.val_accuracy:.4f}, "
           f"test acc {result.teacher.test_accuracy:.4f}"]
    if c is not None:
        a = c.user_attrs
        out += [f"champion: trial {c.number}, width {c.params['width']} ({a['params']:,} params), "
                f"T={c.params['temperature']:.2f}, alpha={c.params['alpha']:.2f}",
                f"          val acc {a['val_accuracy']:.4f} (scratch {a['baseline_val_accuracy']:.4f}, gain "
                f"{100 * a['distillation_gain']:+.2f} points), test acc {result.test_accuracy:.4f} "
                f"(scratch {a['baseline_test_accuracy']:.4f})",
                f"          registered as models:/{cfg.name}-student@champion"]
    if result.export_path:
        out.append(f"SavedModel: {result.export_path}")
    out.append("browse: mlflow ui --backend-store-uri sqlite:///mlflow.db   |   "
               "optuna-dashboard sqlite:///optuna.db   (from the working directory)")
    return "\n".join(out)


def export_trial(cfg: StudyConfig, ws, trial_number: int | None, out: str) -> Path:
    import keras

    from . import data
    from .champion import select
    from .export import export_saved_model

    study = _load(cfg, ws)
    if trial_number is None:
        trial_number = _champion_trial_number(cfg, ws)
        if trial_number is None:
            champ = select(study, cfg)
            if champ is None:
                raise ReportError(f"{cfg.source}: the study has no complete trial to export")
            trial_number = champ.number
    matches = [t for t in study.trials if t.number == trial_number]
    if not matches or "model_uri" not in matches[0].user_attrs:
        raise ReportError(f"--trial {trial_number}: no complete trial with that number in study {cfg.name!r}")
    trial = matches[0]
    path = Path(trial.user_attrs["model_path"])
    if path.exists():
        student = keras.models.load_model(path, safe_mode=True, compile=False)
    else:  # trained on another machine: fetch it from MLflow
        import mlflow

        from . import tracking

        mlflow.set_tracking_uri(tracking.internal_uri(ws.tracking_uri))
        student = mlflow.keras.load_model(trial.user_attrs["model_uri"])
    splits = data.load_splits(cfg.dataset, cfg.seed)
    return export_saved_model(student, out, splits.validation.images[:256])
