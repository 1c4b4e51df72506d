"""Running trials: `optimize` in this process, or N worker processes on the same storage."""

from __future__ import annotations

import logging
import multiprocessing

import optuna

from harness import tracking
from harness.config import StudyConfig
from harness.data import sources
from harness.logs import configure_logging
from harness.record import TrialRecord
from harness.search import interrupt
from harness.search.context import Context
from harness.search.stores import Workspace, create_study
from harness.search.trial import Diverged, Objective
from harness.teacher.trained import load_or_train

log = logging.getLogger(__name__)


def _trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    r = TrialRecord.from_trial(trial)
    log.info("trial %3d %-8s T=%6.2f alpha=%.2f width=%4s  val_acc=%s gain=%s%s%s", trial.number,
             trial.state.name.lower(), r.temperature if r.temperature is not None else float("nan"),
             r.alpha if r.alpha is not None else float("nan"), r.width if r.width is not None else "?",
             f"{r.val_accuracy:.4f}" if r.val_accuracy is not None else "  -   ",
             f"{r.distillation_gain:+.4f}" if r.distillation_gain is not None else "  -  ",
             f"  ({r.fail_reason})" if r.fail_reason else "", f"  {r.method}" if r.method else "")


def optimize(ctx: Context, n_trials: int, seed_offset: int = 0, progress: bool = True) -> None:
    study = create_study(ctx.cfg, ctx.ws, seed_offset)
    study.optimize(Objective(ctx), n_trials=n_trials, catch=(Diverged,),
                   callbacks=[_trial_line, interrupt.stop_study_if_requested],
                   show_progress_bar=progress, gc_after_trial=False)  # Python's own gc suffices: see README
    interrupt.check()  # a Ctrl-C that let its trial finish still stops this invocation


def _worker(cfg: StudyConfig, ws: Workspace, experiment_id: str, parent_run_id: str, n_trials: int,
            index: int) -> None:
    configure_logging(prefix=f"worker {index}")
    interrupt.install()
    tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    splits = sources.load_splits(cfg.dataset, cfg.seed)
    teacher = load_or_train(cfg, splits, ws.teacher_cache)
    optimize(Context(cfg, ws, splits, teacher, experiment_id, parent_run_id), n_trials,
             seed_offset=index, progress=False)


def run_workers(ctx: Context, n_trials: int, workers: int) -> None:
    """N processes on the same storage, each with its share of the trials: exact count."""
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    mp = multiprocessing.get_context("spawn")
    procs = [mp.Process(target=_worker, args=(ctx.cfg, ctx.ws, ctx.experiment_id, ctx.parent_run_id, k, i + 1),
                        name=f"worker-{i + 1}") for i, k in enumerate(shares) if k > 0]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=60)
        raise
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{', '.join(bad)} failed; see the log above")
