"""Running trials: `optimize` in this process, or N worker processes on the same storage."""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing

import optuna
from optuna.trial import TrialState

from harness import tracking
from harness.config import StudyConfig
from harness.data import sources
from harness.distill.guard import Diverged
from harness.logs import Progress, configure_logging
from harness.record import TrialRecord
from harness.search.stores import create_study
from harness.search.trial import Objective
from harness.teacher.trained import load_or_train
from harness.training import interrupt
from harness.training.context import Context
from harness.training.workspace import Workspace

log = logging.getLogger(__name__)


def _trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    r = TrialRecord.from_trial(trial)
    log.info("trial %3d %-8s T=%6.2f alpha=%.2f width=%4s  val_acc=%s gain=%s%s%s", trial.number,
             trial.state.name.lower(), r.temperature if r.temperature is not None else float("nan"),
             r.alpha if r.alpha is not None else float("nan"), r.width if r.width is not None else "?",
             f"{r.val_accuracy:.4f}" if r.val_accuracy is not None else "  -   ",
             f"{r.distillation_gain:+.4f}" if r.distillation_gain is not None else "  -  ",
             f"  ({r.fail_reason})" if r.fail_reason else "", f"  {r.method}" if r.method else "")


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def finished_since(study: optuna.Study, first: int) -> int:
    """Trials numbered `first` or later that have finished (complete, pruned or failed), read
    from the storage: what this invocation's workers, wherever they run, have done."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if t.number >= first)


def optimize(ctx: Context, n_trials: int, seed_offset: int = 0, progress: Progress | None = None) -> None:
    """`n_trials` trials in this process; `progress("search", done, n_trials)` after each."""
    study = create_study(ctx.cfg, ctx.ws, seed_offset)
    callbacks = [_trial_line, interrupt.stop_study_if_requested]
    if progress is not None:
        first = len(study.get_trials(deepcopy=False))
        progress("search", 0, n_trials)
        callbacks.append(lambda s, _: progress("search", min(finished_since(s, first), n_trials), n_trials))
    study.optimize(Objective(ctx), n_trials=n_trials, catch=(Diverged,), callbacks=callbacks,
                   show_progress_bar=False, gc_after_trial=False)  # Python's own gc suffices: see README
    interrupt.check()  # a Ctrl-C that let its trial finish still stops this invocation


class _Prefixed(logging.handlers.QueueHandler):
    """A worker's records, sent to the parent's handlers with `[worker N]` before the message."""

    def __init__(self, queue, prefix: str):
        super().__init__(queue)
        self.prefix = prefix

    def prepare(self, record):
        record = super().prepare(record)
        record.msg = f"[{self.prefix}] {record.msg}"
        return record


def _worker(cfg: StudyConfig, ws: Workspace, experiment_id: str, parent_run_id: str, n_trials: int,
            index: int, queue=None) -> None:
    configure_logging(prefix=f"worker {index}")
    if queue is not None:  # the parent prints (above its progress bar)
        logging.getLogger().handlers[:] = [_Prefixed(queue, f"worker {index}")]
    interrupt.install()
    tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    splits = sources.load_splits(cfg.dataset, cfg.seed, source=cfg.source)
    teacher = load_or_train(cfg, splits, ws.teacher_cache, ws.tracking_uri)
    optimize(Context(cfg, ws, splits, teacher, experiment_id, parent_run_id), n_trials, seed_offset=index)


def run_workers(ctx: Context, n_trials: int, workers: int, progress: Progress | None = None) -> None:
    """N processes on the same storage, each with its share of the trials: exact count.

    With `progress`, the workers' log records come to this process (its handlers print them) and
    `progress("search", done, n_trials)` counts the trials they finished, read from the storage
    every 2 s.
    """
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    mp = multiprocessing.get_context("spawn")
    queue = listener = None
    if progress is not None:
        study = create_study(ctx.cfg, ctx.ws)
        first = len(study.get_trials(deepcopy=False))
        queue = mp.Queue()
        listener = logging.handlers.QueueListener(queue, _Relay())
        listener.start()
        progress("search", 0, n_trials)
    procs = [mp.Process(target=_worker, args=(ctx.cfg, ctx.ws, ctx.experiment_id, ctx.parent_run_id, k, i + 1,
                                              queue), name=f"worker-{i + 1}") for i, k in enumerate(shares) if k > 0]
    for p in procs:
        p.start()
    try:
        for p in procs:
            while p.is_alive():
                p.join(timeout=2.0)
                if progress is not None:
                    progress("search", min(finished_since(study, first), n_trials), n_trials)
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        if listener is not None:
            listener.stop()
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{', '.join(bad)} failed; see the log above")


class _Relay(logging.Handler):
    """A worker's record, handled by this process's logger of the same name."""

    def handle(self, record):
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        return True
