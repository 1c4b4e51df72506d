"""The study part of `harness bench`: where a real study's wall time goes.

Runs in a child process (so its peak memory is its own) on the full
Fashion-MNIST transfer set, in a working directory made afresh for each bench run:

1. a one-trial warm-up invocation trains and caches the teacher;
2. a two-objective study (no pruning) of `n_trials` trials: the fraction of
   its wall time outside the students' `fit` calls (set-up, data, MLflow
   logging, plots, selection, export); the median seconds per trial outside
   its training epochs, by part, and the same less its forward passes
   (`trial_bookkeeping_s`, `clock.py`); and its FLOP efficiency, the
   training FLOPs of all it trained over its wall time x the matrix-multiply
   rate of its precision (measured in the child right after it), for the whole study and for its
   search and confirmation stages apart (the confirmation trains populations, see confirm/population.py);
3. a one-objective study of 2 x `n_trials` trials with the median pruner
   (after 3 unpruned trials, from the first epoch on): epochs run against the
   epoch budget (what pruning saved).

Across all three, the teacher must run forward over the transfer set once.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_mod
import shutil
import statistics
import time
from pathlib import Path

from harness import config, study
from harness.bench.memory import peak_rss_gib
from harness.logs import configure_logging
from harness.record import TrialRecord
from harness.teacher import trained as teacher
from harness.training.clock import overhead

log = logging.getLogger(__name__)

TEACHER = {"family": "mlp", "widths": [1200, 1200], "dropout": 0.3, "input_dropout": 0.0, "jitter": 0,
           "epochs": 2}


def _cfg(name, n_trials, epochs, objectives, pruner=None):
    return config.parse({
        "name": name, "seed": 0, "dataset": {"name": "fashion_mnist"}, "teacher": TEACHER,
        "student": {"family": "mlp", "depth": 2},
        "training": {"epochs": epochs, "batch_size": 128, "learning_rate": 0.001},
        "search": {"temperature": {"low": 1.0, "high": 20.0, "log": True}, "alpha": {"low": 0.0, "high": 1.0},
                   "width": {"choices": [128, 256, 512]}},
        "objectives": objectives, "pruner": pruner or {"type": "none"}, "n_trials": n_trials,
        "exports": ["savedmodel"],  # as the bench measured it before the TFLite exports
    }, f"<bench:{name}>")


def matmul_gflops(precision: str, n: int = 2048, products: int = 5, samples: int = 3) -> float:
    """The median rate of n x n matrix products in a precision (float32 or bfloat16), GFLOP/s."""
    import tensorflow as tf

    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    a = tf.cast(tf.random.normal([n, n], seed=0), dtype)
    b = tf.cast(tf.random.normal([n, n], seed=1), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    product().numpy()
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(products):
            product().numpy()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 * products / statistics.median(times) / 1e9


def _child(workdir: str, n_trials: int, epochs: int, queue, pruned_part: bool = True) -> None:
    configure_logging(prefix="bench study")
    study.run(_cfg("bench_warmup", 1, 1, ["val_accuracy", "params"]), workdir, export=False)
    r = study.run(_cfg("bench_pareto", n_trials, epochs, ["val_accuracy", "params"]), workdir)
    rate = matmul_gflops(r.precision)
    parts = overhead(r.trial_times)
    result = {
        "overhead_fraction": 1.0 - r.fit_seconds / r.seconds,
        "study_wall_s": r.seconds, "study_fit_s": r.fit_seconds, "study_trials": r.new_trials,
        "trial_overhead_s": parts["total"],
        "trial_overhead_parts_s": {k: v for k, v in parts.items()
                                   if k not in ("total", "training", "bookkeeping")},
        "trial_bookkeeping_s": parts["bookkeeping"],
        # the validation passes' rate: their forward FLOPs over their seconds, all trials together
        "validation_gflops": sum(t.get("validation_flops", 0.0) for t in r.trial_times)
        / max(sum(t.get("validation", 0.0) for t in r.trial_times), 1e-9) / 1e9,
        "trial_training_s": parts["training"],
        "train_flops": r.train_flops, "precision": r.precision, "matmul_gflops": rate,
        "flop_efficiency": r.train_flops / (r.seconds * rate * 1e9),
        "search_wall_s": r.search_seconds, "search_flop_efficiency": r.search_flops / (r.search_seconds * rate * 1e9),
        "confirm_wall_s": r.confirm_seconds,
        "confirm_flop_efficiency": r.confirm_flops / (r.confirm_seconds * rate * 1e9) if r.confirm_seconds else None,
        "teacher_passes": teacher.transfer_passes,
    }
    if pruned_part:
        pruned = study.run(_cfg("bench_pruned", 2 * n_trials, epochs, ["val_accuracy"],
                                {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 0}), workdir,
                           export=False)
        ran = [(t, TrialRecord.from_trial(t)) for t in pruned.study.trials]
        ran = [(t, rec) for t, rec in ran if rec.epochs_run is not None]
        result.update({"epochs_run": sum(rec.epochs_run for _, rec in ran), "epochs_budget": len(ran) * epochs,
                       "trials_pruned": sum(t.state.name == "PRUNED" for t, _ in ran),
                       "teacher_passes": teacher.transfer_passes})
    result["peak_rss_gib"] = peak_rss_gib()
    queue.put(result)


def run_study_bench(workdir: str | Path = "bench_work", n_trials: int = 6, epochs: int = 6,
                    pruned_part: bool = True) -> dict:
    """The study part's figures (see the module's docstring); `pruned_part=False` skips step 3."""
    workdir = Path(workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(str(workdir), n_trials, epochs, queue, pruned_part))
    proc.start()
    while True:  # the child may die before it answers: do not wait for it forever
        try:
            result = queue.get(timeout=5)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"bench study process exited with {proc.exitcode}") from None
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"bench study process exited with {proc.exitcode}")
    return result


def format_study(result: dict) -> str:
    lines = []
    for k, v in result.items():
        if isinstance(v, dict):
            lines.append(f"{k:22s} " + ", ".join(f"{p} {x:.3g}" for p, x in v.items()))
        else:
            lines.append(f"{k:22s} {v:.4g}" if isinstance(v, (int, float)) else f"{k:22s} {v}")
    return "\n".join(lines)
