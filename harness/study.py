"""The study, as a story: data -> teacher -> search -> confirm -> champion -> export.

One invocation is one parent MLflow run. The data are loaded and the teacher
trained (or loaded from its cache) once per study, not per trial; every trial,
scratch twin, confirmation run and the teacher get a run nested under the
parent. The search proposes; confirmation over fresh seeds, each paired with
its scratch twin, turns its picks into intervals; the champion is chosen on
the confirmed validation means. The validation split chooses; the test split
only reports.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import optuna

from harness import tracking
from harness.config import StudyConfig, check_classes, widths_searched
from harness.confirm import compression as compress_stage, confirmation as confirm, methods as confirm_methods, \
    reference
from harness.data import omitted, sources, unlabeled, views
from harness.data.evaluate import ece
from harness.deploy import champion as champion_mod, compression
from harness.distill import builder, methods, models
from harness.distill.models import build_student
from harness.logs import Progress
from harness.record import TrialRecord
from harness.report import plots
from harness.search import space, stores
from harness.search.workers import optimize, run_workers
from harness.teacher.trained import Teacher, layered as teacher_models, load_or_train, log_teacher
from harness.training import contention, depth, interrupt
from harness.training.context import Context
from harness.training.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    study: optuna.Study
    champion: TrialRecord | None
    exports: dict[str, dict] | None  # format -> figures and path, or {"refused": why}
    test_accuracy: float | None
    teacher: Teacher
    parent_run_id: str
    seconds: float
    fit_seconds: float
    new_trials: int
    confirmed: list[confirm.Confirmed] = field(default_factory=list)
    teacher_ece: float | None = None
    search_seconds: float = 0.0
    confirm_seconds: float = 0.0
    train_flops: float = 0.0  # of everything this invocation trained: teacher (when not cached), twins, students
    trial_times: list[dict] = field(default_factory=list)  # per trial of this process, by part (clock.py)
    precision: str = "float32"
    search_flops: float = 0.0  # training FLOPs of the search (its students and twins)
    confirm_flops: float = 0.0  # and of the confirmation
    champion_scratch: bool = False  # the registered champion is the scratch twin (confirm/compression.py)
    contention: dict = field(default_factory=dict)  # the CPU it did not have: steal_pct, others_pct (contention.py)


def run(cfg: StudyConfig, workdir=".", n_trials: int | None = None, storage_url: str | None = None,
        tracking_uri: str | None = None, workers: int = 1, export: bool = True,
        progress: Progress | None = None, finish: bool = True) -> StudyResult:
    """Create or resume the study, run its trials, pick, test, register and export the champion.

    `progress(phase, done, total)` hears of every finished trial ("search") and every confirmed
    pair ("confirmation"); the command line draws its progress bar from it. Without `finish` it
    only searches: confirmation, the champion and the exports are left to one `python -m harness
    finish` (`n_trials=0`) once every machine of a shared storage is done, so they happen once per
    study rather than once per machine.
    """
    t_start, meter = time.perf_counter(), contention.Meter()
    interrupt.install()
    ws = Workspace.resolve(workdir, storage_url, tracking_uri)
    if not ws.workdir.is_dir():
        raise stores.StudyError(f"--workdir {ws.workdir}: no such folder")
    stores.check_stores(ws, cfg.source)
    stores.check_compatible(cfg, ws)
    # Our own line per trial says what happened (with the reason of a failure); Optuna would
    # repeat it with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    splits = sources.load_splits(cfg.dataset, cfg.seed, source=cfg.source)
    contents = stores.check_contents(cfg, ws, splits)
    check_classes(cfg, splits.num_classes)
    builder.check(cfg.student.builder, cfg.source, widths_searched(cfg), splits.image_shape,
                  splits.num_classes)
    models.check_fits(cfg, splits.image_shape)
    unlabeled.check(cfg, splits.image_shape)
    views.check(cfg, splits.image_shape)
    space.check_budget(cfg, splits.image_shape, splits.num_classes)
    for name in cfg.methods:  # a method's own demands on the models (a FitNets layer that exists)
        methods.get(name).check_study(
            cfg, lambda: build_student(cfg.student, min(widths_searched(cfg)), splits.image_shape,
                                       splits.num_classes, source=cfg.source),
            lambda: teacher_models(cfg, splits.image_shape, splits.num_classes))
    depth.check(cfg, splits.image_shape)
    teacher = load_or_train(cfg, splits, ws.teacher_cache, ws.tracking_uri)
    compression.check_teacher_accuracy(cfg, teacher.val_accuracy)
    experiment_id = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    tracking.close_orphans(experiment_id)
    study = stores.create_study(cfg, ws)
    stores.record_contents(study, contents)
    optuna.storages.fail_stale_trials(study)
    done = stores.counted_trials(study)
    todo = n_trials if n_trials is not None else max(0, cfg.n_trials - done)
    log.info("study %r: %d trial(s) counted, %d to run (%d worker(s)); stores: %s, %s", cfg.name, done, todo,
             workers, ws.storage, ws.tracking_uri)

    parent = tracking.start("study", f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                            experiment_id=experiment_id, tags={"optuna.study": cfg.name})
    status = "FAILED"
    ctx = Context(cfg, ws, splits, teacher, experiment_id, parent.info.run_id)
    try:
        mlflow.log_dict(cfg.to_dict(), "config.yaml")
        tracking.log_datasets(ctx.datasets)
        sources.log_to_run(splits)
        mlflow.log_params({"n_trials": cfg.n_trials, "workers": workers, "new_trials": todo,
                           "teacher_key": teacher.key, "precision": ctx.precision,
                           "precision_setting": cfg.training.precision})
        ctx.log_transfer()
        log_teacher(teacher, cfg, experiment_id, parent.info.run_id, splits.validation.images[:2])

        ctx.teacher_test_probs  # the teacher's test pass: once a study, before the trials' clock starts
        t0 = time.perf_counter()
        space.balance_methods(study, cfg, todo, splits.image_shape, splits.num_classes)  # with search.method
        if todo and workers > 1:
            run_workers(ctx, todo, workers, progress)
        elif todo:
            optimize(ctx, todo, progress=progress)
        search_seconds, search_flops = time.perf_counter() - t0, ctx.train_flops

        t0 = time.perf_counter()
        teacher_ece = ece(ctx.teacher_test_probs, splits.test.labels)
        configs = confirm.configurations(study, cfg) if finish else []
        if not finish:
            log.info("search only: confirmation, the champion and the exports are left to `python -m harness "
                     "finish %s` (once, when every machine is done)", cfg.source)
        summary = _confirm(ctx, study, configs, teacher_ece, progress) if finish else []
        confirm_seconds, confirm_flops = time.perf_counter() - t0, ctx.train_flops - search_flops
        champ, scratch = _champion(ctx, study, configs, summary) if finish else (None, False)
        test_acc = exports = None
        if finish:
            champion_mod.log_front_models(study, cfg, splits.class_names)
        if champ is not None:
            test_acc = compress_stage.register(ctx, champ, scratch)
            if export and cfg.exports:  # `exports: []`: register only
                deployed = champion_mod.deployable(cfg, champion_mod.load_student(champ, cfg), splits)
                exports = champion_mod.export(cfg, champ, champion_mod.export_paths(cfg, ws.workdir / "exports"),
                                              splits, deployed)
            mlflow.log_metrics({"champion_trial": champ.number, "champion_test_accuracy": test_acc})
        plots.log_study_artifacts(study, ctx, champ)

        status = "FINISHED"
        seconds = time.perf_counter() - t_start
        train_flops = ctx.train_flops + (0.0 if teacher.from_cache or not teacher.trained else
                                         3.0 * teacher.flops * len(splits.transfer) * cfg.teacher.epochs)
        shared = meter.read()  # a wall time on a shared machine comes with what it shared (contention.py)
        mlflow.log_metrics({"wall_seconds": seconds, "fit_seconds": ctx.fit_seconds,
                            "search_seconds": search_seconds, "confirm_seconds": confirm_seconds,
                            "train_flops": train_flops, "train_gflops_per_s": train_flops / seconds / 1e9,
                            "search_train_flops": search_flops, "confirm_train_flops": confirm_flops,
                            **contention.as_metrics(shared)})
        return StudyResult(study=study, champion=champ, exports=exports, test_accuracy=test_acc, teacher=teacher,
                           parent_run_id=parent.info.run_id, seconds=seconds, fit_seconds=ctx.fit_seconds,
                           new_trials=todo, confirmed=summary, teacher_ece=teacher_ece,
                           search_seconds=search_seconds, confirm_seconds=confirm_seconds, train_flops=train_flops,
                           trial_times=ctx.clock.trials, precision=ctx.precision, search_flops=search_flops,
                           confirm_flops=confirm_flops, champion_scratch=scratch, contention=shared)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def _confirm(ctx: Context, study: optuna.Study, configs: list[TrialRecord], teacher_ece: float,
             progress: Progress | None = None) -> list[confirm.Confirmed]:
    """The confirmation stage, its artifacts on the parent run and its summary in the study."""
    cfg = ctx.cfg
    if not cfg.confirm.seeds or not configs:
        log.warning("no confirmation (confirm.seeds: %d): every gain below is one seed, a search result",
                    cfg.confirm.seeds)
        return []
    log.info("%s", compress_stage.estimate(ctx, study, configs))
    arm_seconds: dict[str, float] = {}
    rows = confirm.run(ctx, configs, progress or (lambda *_: None), arm_seconds)
    summary = confirm.summarise(rows)
    comparisons = confirm.between_arms(rows) + confirm_methods.between_methods(rows)  # arms; dkd - kd, ...
    references = reference.against_reference(rows, cfg.confirm.reference)

    def plain(ds):
        return [{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in d.items()} for d in ds]

    as_dicts = plain(comparisons)
    teacher_test = {"accuracy": ctx.teacher.test_accuracy, "ece": teacher_ece,
                    "omitted": ctx.teacher_omitted_accuracy}
    study.set_user_attr("confirmed", [c.to_dict() for c in summary])
    study.set_user_attr("between_arms", as_dicts)
    study.set_user_attr("against_reference", plain(references))
    study.set_user_attr("teacher_test", teacher_test)
    study.set_user_attr("arm_seconds", arm_seconds)
    mlflow.log_metric("teacher_test_ece", teacher_ece)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        confirm.write_csv(rows, d / "confirm.csv")
        (d / "summary.json").write_text(json.dumps(
            {"seeds": confirm.seeds(cfg), "teacher": teacher_test, "arm_seconds": arm_seconds,
             "configurations": [c.to_dict() for c in summary],
             "between_arms": as_dicts, "against_reference": plain(references)}, indent=1))
        plots.confirmed(summary, ctx.teacher.test_accuracy, cfg.name, d / "confirmed.png")
        mlflow.log_artifacts(str(d), "confirm")
    compress_stage.figures(ctx, study, configs, summary)  # sizes and latencies against the teacher's
    notes = reference.lines(references) + omitted.lines(summary, ctx.teacher_omitted_accuracy) + \
        compress_stage.lines(study, summary) + confirm.arm_seconds_lines(arm_seconds)
    log.info("%s", confirm.table(summary, ctx.teacher.test_accuracy, teacher_ece, comparisons, notes))
    return summary


def _champion(ctx: Context, study: optuna.Study, configs: list[TrialRecord],
              summary: list[confirm.Confirmed]) -> tuple[TrialRecord | None, bool]:
    """The rule applied to the confirmed validation means (confirm/compression.py: possibly nothing,
    possibly the scratch twin), or to the search's front without them; and whether it is a twin."""
    cfg = ctx.cfg
    if not summary:
        cost = champion_mod.cost_of(cfg, configs)
        return champion_mod.select(champion_mod.front(study, cfg), cfg.champion, cost,
                                   teacher_val=ctx.teacher.val_accuracy, source=cfg.source), False
    return compress_stage.choose(ctx, study, configs, summary)
