"""One trial's life: suggest, train the distilled student (through `training.run`), score it against
its scratch twin, store it.

Whatever happens (completion, pruning, divergence, Ctrl-C, a bug), the trial
leaves a `TrialRecord` in Optuna and a closed MLflow run whose `state` tag
says which.
"""

from __future__ import annotations

import logging

import keras
import mlflow
import optuna
from optuna_integration import KerasPruningCallback

from harness import files, tracking
from harness.deploy import latency, tflite
from harness.distill.guard import Diverged
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.search import space
from harness.training import contention, depth, interrupt, twin
from harness.training.context import Context
from harness.training.run import RunSpec, log_params, train_run

log = logging.getLogger(__name__)


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1


def deployed_cost(trial: optuna.Trial, student: keras.Model, image) -> dict:
    """The student as it would be deployed (float TFLite): its file size and the median
    single-image latency on one thread, after a warm-up.

    Both depend on the architecture (the width), not on the weights: a width measured by an
    earlier complete trial of the study is not measured again. Otherwise the noise between two
    measurements (10-30% at these microsecond scales) would rank equal students apart and put
    several copies of one width on the front."""
    arch = (trial.params["width"], trial.params.get("depth"))
    for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if (t.params.get("width"), t.params.get("depth")) == arch and t.user_attrs.get("latency_ms") is not None:
            return {"size_bytes": t.user_attrs["size_bytes"], "latency_ms": t.user_attrs["latency_ms"]}
    model = tflite.convert(student, "tflite")
    return {"size_bytes": len(model), "latency_ms": latency.tflite_ms(model, image)}


class Objective:
    """Optuna's objective over one process's `Context`: (val accuracy, the study's cost: params,
    latency_ms or size_bytes) or val accuracy."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def __call__(self, trial: optuna.Trial):
        self.ctx.clock.begin()
        try:
            with interrupt.deferred():  # Ctrl-C waits for a safe point (see interrupt.py)
                return self._run(trial)
        finally:
            self.ctx.clock.end()

    def _run(self, trial: optuna.Trial):
        ctx = self.ctx
        cfg, clock = ctx.cfg, ctx.clock
        with clock.part("optuna"):
            p = space.suggest(trial, cfg, ctx.splits.image_shape, ctx.splits.num_classes)
        try:  # a searched depth trains in its own context (training/depth.py)
            return self._trial(trial, depth.context(ctx, p.get("depth")), p)
        finally:
            depth.settle(ctx)

    def _trial(self, trial: optuna.Trial, ctx: Context, p: dict):
        cfg, tr, clock = ctx.cfg, ctx.cfg.training, ctx.clock
        meter = contention.Meter()  # what the trial (its twin too) shared the machine with: two CPU-time reads
        recipe = Recipe.of(tr, p.get("learning_rate"), p.get("epochs"))
        twin_diverged = None
        try:
            scratch = twin.train_or_load(ctx, p["width"], recipe=recipe)
        except twin.TwinDiverged as e:  # the trial diverges with it (its run says why, below)
            scratch, twin_diverged = None, e
        interrupt.check()
        method, counter = space.method_of(p), EpochCounter()
        callbacks = [counter] if cfg.multi_objective else [counter, KerasPruningCallback(trial, "val_accuracy")]
        spec = RunSpec("trial", f"trial-{trial.number}", p["width"], cfg.seed, recipe, method,
                       params={**recipe.to_dict(), **p, **method.params(),
                               "family": cfg.student.builder or cfg.student.family, "depth": cfg.student.depth,
                               "seed": cfg.seed, "teacher_key": ctx.teacher.key, "precision": ctx.precision},
                       tags={"optuna.study": cfg.name, "optuna.trial": str(trial.number)},
                       callbacks=tuple(callbacks), datasets=True)
        with clock.part("mlflow"):
            run = spec.start(ctx)
        record = TrialRecord(mlflow_run_id=run.info.run_id)
        with clock.part("optuna"):
            record.save(trial)
        status, state, closing = "FAILED", "failed", {}  # closing: metrics of the run's last request
        try:
            if twin_diverged is not None:
                log_params(ctx, spec)  # the run still says what it would have trained
                raise Diverged(str(twin_diverged))
            log.info("trial %3d distilling: T=%.2f alpha=%.2f width=%d, %d epochs", trial.number, p["temperature"],
                     p["alpha"], p["width"], recipe.epochs)
            fit0 = ctx.fit_seconds
            result = train_run(ctx, spec)
            fit_seconds = ctx.fit_seconds - fit0
            student, val_acc = result.student, result.val_accuracy
            gain = val_acc - scratch.val_accuracy
            with clock.part("deployed_cost"):  # latency and size of the deployed (TFLite) student, if an objective
                deployed = deployed_cost(trial, student, ctx.splits.validation.images[0]) if cfg.cost != "params" else {}
            closing = {"distillation_gain": gain, "twin_val_accuracy": scratch.val_accuracy, **deployed}
            # Logged as an MLflow model only if it reaches the front (champion.log_front_models).
            local = ctx.ws.workdir / "trials" / cfg.name / f"trial-{trial.number}.keras"
            with clock.part("saving"), files.replacing(local, suffix=".keras") as tmp:
                student.save(tmp)
            record = TrialRecord(val_accuracy=val_acc, params=result.params, flops=result.flops,
                                 distillation_gain=gain, baseline_val_accuracy=scratch.val_accuracy,
                                 baseline_test_accuracy=scratch.test_accuracy,
                                 model_path=str(local), fit_seconds=fit_seconds, **deployed)
            with clock.part("optuna"):
                record.save(trial)
            status, state = "FINISHED", "complete"
            return (val_acc, getattr(record, cfg.cost)) if cfg.multi_objective else val_acc
        except optuna.TrialPruned:
            status, state = "FINISHED", "pruned"
            raise
        except Diverged as e:
            TrialRecord(diverged=str(e), fail_reason=str(e)).save(trial)
            mlflow.set_tag("fail_reason", str(e))
            raise
        except KeyboardInterrupt:
            status, state = "KILLED", "interrupted"
            TrialRecord(fail_reason="interrupted (Ctrl-C)").save(trial)
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"[:500]
            TrialRecord(fail_reason=reason).save(trial)
            mlflow.set_tag("fail_reason", reason)
            raise
        finally:
            with clock.part("optuna"):
                TrialRecord(epochs_run=counter.epochs).save(trial)
            with clock.part("mlflow"):
                shared = contention.as_metrics(meter.read(), ("steal_pct", "others_pct"))
                tracking.log_run(metrics={**closing, "epochs_run": counter.epochs, **shared}, tags={"state": state})
                mlflow.end_run(status)
