"""One trial's life: suggest, train the distilled student, score it against its scratch twin, store it.

Whatever happens (completion, pruning, divergence, Ctrl-C, a bug), the trial
leaves a `TrialRecord` in Optuna and a closed MLflow run whose `state` tag
says which.
"""

from __future__ import annotations

import logging
import math
import time

import keras
import mlflow
import optuna
from optuna_integration import KerasPruningCallback

from harness import files, tracking
from harness.deploy import latency, tflite
from harness.distill import schedules
from harness.distill.distiller import Distiller
from harness.distill.guard import Diverged, DivergenceGuard, divergence_reason  # noqa: F401 - re-exported
from harness.distill.methods import Method
from harness.distill.models import flops_per_example, param_count
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.search import baselines, depth, interrupt, space
from harness.search.clock import TimedMlflowCallback
from harness.search.context import Context

log = logging.getLogger(__name__)


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1


def recipe_of(ctx: Context, r: TrialRecord) -> Recipe:
    """The recipe a trial trained with: the file's, with the trial's suggestions on top."""
    return Recipe.of(ctx.cfg.training, r.learning_rate, r.epochs)


def train_distilled(ctx: Context, width: int, seed: int, temperature: float, alpha: float, recipe: Recipe,
                    callbacks: list, every_epoch: bool = True, method: Method | None = None
                    ) -> tuple[keras.Model, dict]:
    """A student distilled from the teacher's soft targets; returns it and its `fit` history.

    Cached: the batches carry the teacher's logits. Online: the teacher runs in
    the step on the very batch the student sees (augmented alike). Without
    `every_epoch` it is validated once, at the end (what confirmation needs).

    Its initial weights and batch order come from `seed` alone (`Context.inputs`),
    the same as its scratch twin's at that seed, and so does its recipe. `method`:
    the loss (None: kd at `temperature` and `alpha`; else its own temperature and alpha win).
    """
    method = method or Method("kd", temperature, alpha)
    pre = ctx.pretrained.pop(ctx.run_key("distilled", width, seed, recipe, method.temperature, method.alpha,
                                         method.name), None)
    if pre is not None:  # trained in a population (confirm/population.py)
        ctx.log_history(pre[1])
        if not math.isfinite(float(pre[1]["loss"][-1])):
            raise Diverged("training loss is not finite at the end of training")
        return pre
    teacher = ctx.teacher.members if ctx.online else None
    steps_per_epoch = schedules.steps(ctx.transfer_examples, recipe.batch_size, 1)

    def compile_distiller(s: keras.Model) -> Distiller:
        d = Distiller(s, teacher, temperature=method.temperature, alpha=method.alpha, method=method.name,
                      steps_per_epoch=steps_per_epoch, masked=bool(ctx.unlabeled_examples))
        d.compile(optimizer=recipe.optimizer_for(ctx.distill_examples), jit_compile=ctx.jit,
                  steps_per_execution=ctx.cfg.training.steps_per_execution)
        return d

    with ctx.clock.part("build_compile"):
        fresh, train = ctx.inputs(width, seed)
        distiller, student = ctx.compiled.get(ctx.compile_key("distilled", width, recipe, method.name), fresh,
                                              compile_distiller)
        distiller.set_method(method, steps_per_epoch)
    t0 = time.perf_counter()
    try:
        with ctx.clock.part("fit"):
            hist = distiller.fit(train, epochs=recipe.epochs, verbose=0, shuffle=False,
                                 callbacks=[ctx.validation(student, every_epoch), interrupt.StopOnInterrupt(),
                                            DivergenceGuard(), *callbacks])
    finally:
        ctx.fit_seconds += time.perf_counter() - t0
    ctx.count_training(student, len(hist.history.get("loss", [])), teacher_forward=ctx.online, distilled=True)
    if not math.isfinite(float(hist.history["loss"][-1])):
        raise Diverged("training loss is not finite at the end of training")
    return student, hist.history


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
        cfg, tr, clock = ctx.cfg, ctx.cfg.training, ctx.clock
        with clock.part("optuna"):
            p = space.suggest(trial, cfg, ctx.splits.image_shape, ctx.splits.num_classes)
        try:  # a searched depth trains in its own context (search/depth.py)
            return self._trial(trial, depth.context(ctx, p.get("depth")), p)
        finally:
            depth.settle(ctx)

    def _trial(self, trial: optuna.Trial, ctx: Context, p: dict):
        cfg, tr, clock = ctx.cfg, ctx.cfg.training, ctx.clock
        recipe = Recipe.of(tr, p.get("learning_rate"), p.get("epochs"))
        twin_diverged = None
        try:
            twin = baselines.train_or_load(ctx, p["width"], recipe=recipe)
        except baselines.TwinDiverged as e:  # the trial diverges with it (its run says why, below)
            twin, twin_diverged = None, e
        interrupt.check()
        with clock.part("mlflow"):
            run = ctx.start_run("trial", f"trial-{trial.number}",
                                tags={"optuna.study": cfg.name, "optuna.trial": str(trial.number)})
        record = TrialRecord(mlflow_run_id=run.info.run_id)
        with clock.part("optuna"):
            record.save(trial)
        status, state, counter = "FAILED", "failed", EpochCounter()
        try:
            with clock.part("mlflow"):
                mlflow.log_params({**recipe.to_dict(), **p, **space.method_of(p).params(),
                                   "family": cfg.student.builder or cfg.student.family,
                                   "depth": cfg.student.depth, "seed": cfg.seed, "teacher_key": ctx.teacher.key,
                                   "precision": ctx.precision})
                ctx.log_transfer()
                tracking.log_datasets(ctx.datasets)
            if twin_diverged is not None:
                raise Diverged(str(twin_diverged))
            callbacks = [counter, TimedMlflowCallback(clock)]
            if not cfg.multi_objective:
                callbacks.append(KerasPruningCallback(trial, "val_accuracy"))
            log.info("trial %3d distilling: T=%.2f alpha=%.2f width=%d, %d epochs", trial.number, p["temperature"],
                     p["alpha"], p["width"], recipe.epochs)
            fit0 = ctx.fit_seconds
            student, history = train_distilled(ctx, p["width"], cfg.seed, p["temperature"], p["alpha"], recipe,
                                               callbacks, method=space.method_of(p))
            fit_seconds = ctx.fit_seconds - fit0
            params, flops = param_count(student), flops_per_example(student)
            val_acc = float(history["val_accuracy"][-1])
            gain = val_acc - twin["val_accuracy"]
            with clock.part("deployed_cost"):  # latency and size of the deployed (TFLite) student, if an objective
                deployed = deployed_cost(trial, student, ctx.splits.validation.images[0]) if cfg.cost != "params" else {}
            with clock.part("mlflow"):
                mlflow.log_metrics({"params": params, "flops": flops, "distillation_gain": gain,
                                    "baseline_val_accuracy": twin["val_accuracy"], **deployed})
            with clock.part("mlflow_model"):
                info = tracking.log_student(student, ctx.splits.validation.images[:2],
                                             class_names=ctx.splits.class_names)
            local = ctx.ws.workdir / "trials" / cfg.name / f"trial-{trial.number}.keras"
            with clock.part("saving"), files.replacing(local, suffix=".keras") as tmp:
                student.save(tmp)
            record = TrialRecord(val_accuracy=val_acc, params=params, flops=flops, distillation_gain=gain,
                                 baseline_val_accuracy=twin["val_accuracy"],
                                 baseline_test_accuracy=twin["test_accuracy"], model_uri=info.model_uri,
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
                mlflow.log_metric("epochs_run", counter.epochs)
                mlflow.set_tag("state", state)
                mlflow.end_run(status)
