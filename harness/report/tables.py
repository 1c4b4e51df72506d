"""What a study found, read back from its stores: the Pareto table, the champion, its exports."""

from __future__ import annotations

import mlflow
import optuna

from harness import tracking
from harness.config import StudyConfig, UserError
from harness.confirm import compression as compress_stage, confirmation as confirm, reference
from harness.data import omitted
from harness.deploy import champion
from harness.distill import methods
from harness.distill.methods import Method
from harness.search import stores
from harness.training import contention
from harness.training.workspace import Workspace

LABELS = {"savedmodel": "SavedModel", "tflite": "TFLite (float32)", "tflite-int8": "TFLite (int8)"}


def int8_figures(f: dict) -> str:
    """", validation drop X points, top-1 agreement Y" for an int8 export's figures ("" otherwise)."""
    if "val_accuracy_drop" not in f:
        return ""
    return f", validation drop {100 * f['val_accuracy_drop']:.2f} points, top-1 agreement {f['agreement']:.4f}"


class ReportError(UserError):
    pass


def load_study(cfg: StudyConfig, ws: Workspace) -> optuna.Study:
    """The stored study of this file, with MLflow pointed at its store; `ReportError` when there is none."""
    s = stores.existing_study(cfg, ws)
    if s is None:
        raise ReportError(f"{cfg.source}: name: no study {cfg.name!r} in {ws.storage}; give the --workdir "
                          f"(or --storage) the study ran in, or run `python -m harness study {cfg.source}` first")
    mlflow.set_tracking_uri(tracking.internal_uri(ws.tracking_uri))
    return s


def _teacher_line(cfg: StudyConfig) -> str:
    exp = mlflow.get_experiment_by_name(cfg.name)
    runs = tracking.find_runs(exp.experiment_id, "teacher") if exp else []
    if not runs:
        return "teacher: not logged yet"
    m = runs[0].data.metrics
    return (f"teacher: {int(m.get('params', 0)):,} params, val acc {m.get('val_accuracy', float('nan')):.4f}, "
            f"test acc {m.get('test_accuracy', float('nan')):.4f}")


def table(cfg: StudyConfig, ws: Workspace) -> str:
    study = load_study(cfg, ws)
    champ = champion.registered_trial(cfg)
    version = champion.current(cfg) if champ is not None else None
    mark = "  <- champion" + (" (its scratch twin, registered)" if version is not None and
                              version.tags.get("harness.trained_as") == "scratch" else "")
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    title = (f"Pareto front (val accuracy vs {cfg.cost})" if cfg.multi_objective else "complete trials") + \
        " of the search: one seed each, gains are best-of-N, not findings"
    deployed = cfg.cost != "params"
    method_column = len(cfg.methods) > 1 or cfg.distillation.method != methods.DEFAULT
    lines = [f"study {cfg.name!r}: " + ", ".join(f"{n} {k}" for k, n in count.items()), _teacher_line(cfg),
             f"{title}:",
             f"{'trial':>5} {'width':>5} {'params':>9} " + (f"{'ms':>7} {'bytes':>9} " if deployed else "") +
             f"{'T':>6} {'alpha':>5} " + (f"{'method':<26} " if method_column else "") +
             f"{'val_acc':>7} {'scratch':>7} {'gain':>7}"]
    for r in sorted(champion.front(study, cfg), key=lambda r: (getattr(r, cfg.cost), r.params)):
        lines.append(f"{r.number:>5} {r.width:>5} {r.params:>9,} " +
                     (f"{r.latency_ms:>7.4f} {r.size_bytes:>9,} " if deployed else "") +
                     f"{r.temperature:>6.2f} {r.alpha:>5.2f} " + (f"{Method.of(r).label():<26} " if method_column else "") +
                     f"{r.val_accuracy:>7.4f} {r.baseline_val_accuracy:>7.4f} "
                     f"{100 * r.distillation_gain:>+6.2f}p" + (mark if r.number == champ else ""))
    if champ is None:
        lines.append("no champion registered yet")
    lines += ["", _confirmed(study)]
    return "\n".join(lines)


def _confirmed(study: optuna.Study) -> str:
    stored = study.user_attrs.get("confirmed")
    if not stored:
        return ("not confirmed over seeds (confirm.seeds: 0, or the study has not finished): the gains above "
                "are one seed and best-of-N on validation, a search result, not a finding")
    teacher = study.user_attrs.get("teacher_test", {})
    summary = [confirm.Confirmed.from_dict(d) for d in stored]
    return confirm.table(summary, teacher.get("accuracy"), teacher.get("ece"), _between_arms(study),
                         _notes(study, summary))


def _between_arms(study: optuna.Study) -> list[dict]:
    """The arms' paired differences as stored in the study (intervals rebuilt)."""
    iv = confirm.Interval.from_dict
    return [{**d, "val_gain": iv(d["val_gain"]), "test_gain": iv(d["test_gain"])}
            for d in study.user_attrs.get("between_arms", [])]


def _notes(study: optuna.Study, summary: list) -> list[str]:
    """Each arm against the reference arm's scratch twin (as stored, intervals rebuilt), the
    omitted classes before and after the bias correction, and each arm's wall time."""
    refs = [{**d, "test_gain": confirm.Interval.from_dict(d["test_gain"])}
            for d in study.user_attrs.get("against_reference", [])]
    return reference.lines(refs) + omitted.lines(summary, study.user_attrs.get("teacher_test", {}).get("omitted")) + \
        compress_stage.lines(study, summary) + confirm.arm_seconds_lines(study.user_attrs.get("arm_seconds"))


def browse_line(ws: Workspace | None, experiment_id: str | None = None) -> str:
    """How to open the two browsers on this workspace's stores, as commands that work from any folder
    (the checkout's `make ui` / `make dashboard` only know the default stores of WORKDIR), and the
    experiment's runs view itself: MLflow 3 opens an experiment on its GenAI overview, empty here."""
    runs = f", then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs" if experiment_id else ""
    if ws is None:
        return (f"browse: make ui (MLflow{runs})   |   make dashboard (Optuna, http://127.0.0.1:8080)"
                "   (WORKDIR=DIR for another working directory)")
    if ws.tracking_uri.startswith(("http://", "https://")):
        mlflow_ui = f"MLflow at {ws.tracking_uri.rstrip('/')}" + (f"/#/experiments/{experiment_id}/runs"
                                                                 if experiment_id else "")
    else:
        mlflow_ui = f"mlflow ui --backend-store-uri {ws.tracking_uri}{runs}"
    return f"browse: {mlflow_ui}   |   optuna-dashboard {ws.storage}   (in the checkout: make ui / make dashboard)"


def summary(cfg: StudyConfig, result, ws: Workspace | None = None) -> str:
    study, c = result.study, result.champion
    states = [t.state.name.lower() for t in study.trials]
    shared = contention.describe(result.contention)  # why a wall time may be longer than the last one
    out = [f"study {cfg.name!r} done in {result.seconds / 60:.1f} min (search {result.search_seconds / 60:.1f}, "
           f"confirmation {result.confirm_seconds / 60:.1f}; {result.new_trials} new trial(s)); "
           f"trials: {states.count('complete')} complete, {states.count('pruned')} pruned, "
           f"{states.count('fail')} failed" + (f"; {shared}" if shared else ""),
           f"teacher: {result.teacher.params:,} params, val acc {result.teacher.val_accuracy:.4f}, "
           f"test acc {result.teacher.test_accuracy:.4f}"]
    out += [f"warning: {w}" for w in getattr(result.teacher, "warnings", [])]  # e.g. a class order in doubt
    if result.confirmed:
        out.append(confirm.table(result.confirmed, result.teacher.test_accuracy, result.teacher_ece,
                                 _between_arms(study), _notes(study, result.confirmed)))
    if c is not None:
        conf = max((x for x in result.confirmed if x.trial == c.number), key=lambda x: x.val_accuracy,
                   default=None)
        how = (f"chosen by the rule on the confirmed validation means; confirmed test "
               f"{100 * conf.test.mean:.2f} ± {100 * conf.test.half_width:.2f}, paired gain "
               f"{conf.test_gain.points()} points ({confirm.verdict(conf)})" if conf else
               f"search trial only (one seed): val acc {c.val_accuracy:.4f}, scratch {c.baseline_val_accuracy:.4f}, "
               "not confirmed")
        out += [f"champion: trial {c.number}, width {c.width} ({c.params:,} params), "
                f"T={c.temperature:.2f}, alpha={c.alpha:.2f}" + (f", {Method.of(c).label()}" if c.method else ""),
                f"          {how}",
                (f"          its scratch twin (seed {cfg.seed + 1}), registered: better than distilled, "
                 f"test acc {result.test_accuracy:.4f}" if getattr(result, "champion_scratch", False) else
                 f"          its search student (seed {cfg.seed}): test acc {result.test_accuracy:.4f}"),
                f"          registered as models:/{champion.registered_name(cfg.name)}@{champion.ALIAS}"]
    for kind, f in (result.exports or {}).items():
        out.append(f"{LABELS[kind]}: " + (f["refused"] if "refused" in f else
                   f"{f['path']}  (test acc {f['test_accuracy']:.4f}, {f['size_bytes']:,} bytes, "
                   f"p50 {f['p50_ms']:.4f} ms, p99 {f['p99_ms']:.4f} ms{int8_figures(f)})"))
    out.append(browse_line(ws, mlflow.get_run(result.parent_run_id).info.experiment_id))
    return "\n".join(out)
