"""One student run, whatever asked for it (a search trial, a scratch twin, a confirmation run, a
population member handed over in `ctx.pretrained`): `train_run` logs its parameters on the active
MLflow run, builds the student from its seed, fits it with the guards (validation, Ctrl-C,
divergence), scores it (validation; test where the run reports it), logs the figures and returns one
`RunResult`. `train_distilled` and `train_scratch` are its two fits (the bench times them alone).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import keras
import mlflow

from harness import tracking
from harness.data import omitted
from harness.data.evaluate import fidelity
from harness.distill import schedules
from harness.distill.distiller import Distiller, compile_plain
from harness.distill.guard import Diverged, DivergenceGuard
from harness.distill.methods import Method
from harness.distill.models import flops_per_example, param_count
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.training import interrupt
from harness.training.clock import TimedMlflowCallback
from harness.training.context import Context


@dataclass(frozen=True)
class RunSpec:
    """What one student run trains, and how its MLflow run is named and described."""
    role: str  # the MLflow run's role tag: trial, twin or confirm
    name: str  # the MLflow run's name
    width: int
    seed: int
    recipe: Recipe
    method: Method | None = None  # the loss; None: the scratch twin (hard labels only)
    params: dict = field(default_factory=dict)  # its MLflow params (the transfer set's are added)
    tags: dict = field(default_factory=dict)
    callbacks: tuple = ()  # beyond the guards and the per-epoch MLflow metrics
    every_epoch: bool = True  # validated at every epoch (a trial, which may be pruned) or once at the end
    test: bool = False  # scored on the test split too: accuracy, fidelity to the teacher, omitted classes
    together: bool = False  # a scratch twin trained in a population: taken from `ctx.pretrained`
    datasets: bool = False  # the splits as the run's MLflow dataset inputs (a trial's)

    def start(self, ctx: Context):
        """Its MLflow run, nested under the invocation's parent run."""
        return ctx.start_run(self.role, self.name, tags=self.tags)


@dataclass
class RunResult:
    """What one student run measured. Accuracies are fractions in [0, 1]; KL in nats; the test
    figures are None for a run that does not report the test split (a trial)."""
    width: int
    seed: int
    val_accuracy: float
    params: int
    flops: int  # per example, forward pass
    epochs: int  # the recipe's
    learning_rate: float
    mlflow_run_id: str
    test_accuracy: float | None = None
    agreement: float | None = None  # top-1 agreement with the teacher, test split
    kl: float | None = None  # KL(teacher || student) at T = 1, test split
    ece: float | None = None
    omitted: dict = field(default_factory=dict)  # with omitted classes: `omitted.Correction.summary()`
    model_path: str | None = None  # a confirmation twin's saved .keras file (`baselines/KEY.keras`)
    history: dict = field(default_factory=dict, repr=False, compare=False)  # the fit's per-epoch figures
    student: keras.Model | None = field(default=None, repr=False, compare=False)

    _STORED = ("width", "seed", "val_accuracy", "test_accuracy", "agreement", "kl", "ece", "params", "flops",
               "epochs", "learning_rate", "mlflow_run_id")

    def to_dict(self) -> dict:
        """The scratch twin's JSON file (`baselines/KEY.json`): these keys, the omitted-class ones last
        (then a confirmation twin's `model_path`)."""
        out = {**{k: getattr(self, k) for k in self._STORED}, **self.omitted}
        if self.model_path is not None:
            out["model_path"] = self.model_path
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        """A twin's JSON file back (every file written with `to_dict`'s keys)."""
        return cls(**{k: d[k] for k in cls._STORED}, omitted={k: d[k] for k in omitted.FIELDS if k in d},
                   model_path=d.get("model_path"))


def recipe_of(ctx: Context, r: TrialRecord) -> Recipe:
    """The recipe a trial trained with: the file's, with the trial's suggestions on top."""
    return Recipe.of(ctx.cfg.training, r.learning_rate, r.epochs)


def log_params(ctx: Context, spec: RunSpec) -> None:
    """The run's parameters and transfer set (and, for a trial, the dataset inputs) on the active run."""
    with ctx.clock.part("mlflow"):
        # with the transfer set's, in one request; a twin never sees unlabeled images
        ctx.log_transfer(spec.params, distilled=spec.method is not None)
        if spec.datasets:
            tracking.log_datasets(ctx.datasets)


def train_run(ctx: Context, spec: RunSpec) -> RunResult:
    """Train and score one student run inside its active MLflow run (`spec.start(ctx)`), logging
    its params, per-epoch metrics and figures (`params`, `flops`; `test_accuracy`, `agreement`,
    `kl`, `ece` and the omitted classes' with `spec.test`).

    Raises `Diverged` (tagging the run's `fail_reason`) when the loss stops being finite, and
    `KeyboardInterrupt` after a Ctrl-C has let the epoch end."""
    clock = ctx.clock
    log_params(ctx, spec)
    callbacks = [TimedMlflowCallback(clock), *spec.callbacks]
    try:
        if spec.method is None:
            student, history = train_scratch(ctx, spec.width, spec.seed, spec.recipe, callbacks,
                                             every_epoch=spec.every_epoch, together=spec.together)
        else:
            m = spec.method
            student, history = train_distilled(ctx, spec.width, spec.seed, m.temperature, m.alpha, spec.recipe,
                                               callbacks, every_epoch=spec.every_epoch, method=m)
    except Diverged as e:
        mlflow.set_tag("fail_reason", str(e))
        raise
    result = RunResult(spec.width, spec.seed, float(history["val_accuracy"][-1]), param_count(student),
                       flops_per_example(student), spec.recipe.epochs, spec.recipe.learning_rate,
                       mlflow.active_run().info.run_id, history=history, student=student)
    metrics = {"params": result.params, "flops": result.flops}
    if spec.test:  # a twin or a confirmation run: reference points, never chosen on test
        with clock.part("evaluation"):
            test_logits = ctx.forward(student, ctx.forward.held(ctx.splits.test.images))  # validation.py
            test = fidelity(test_logits, ctx.splits.test.labels, ctx.teacher_test_probs)
            fix = omitted.correct(student, ctx.splits, ctx.omitted, test_logits) if ctx.omitted else None
        result.test_accuracy, result.agreement, result.kl, result.ece = (test["accuracy"], test["agreement"],
                                                                         test["kl"], test["ece"])
        metrics.update(test_accuracy=result.test_accuracy, agreement=result.agreement, kl=result.kl,
                       ece=result.ece)
        if fix is not None:  # never saw these classes: near 0% on them, before and after the correction
            result.omitted = fix.summary()
            metrics.update(fix.metrics())
    with clock.part("mlflow"):
        tracking.log_run(metrics=metrics)
    return result


def train_scratch(ctx: Context, width: int, seed: int, recipe: Recipe, callbacks: list, every_epoch: bool = False,
                  together: bool = False) -> tuple[keras.Model, dict]:
    """The student at `seed` trained from scratch on hard labels alone (the scratch twin); returns it
    and its `fit` history. Validated once, at the end, by default: a twin is a reference point,
    never pruned. `together`: a population trained it already (`ctx.pretrained`)."""
    pre = ctx.pretrained.pop(ctx.run_key("scratch", width, seed, recipe), None) if together else None
    if pre is not None:  # trained with its seed's distilled students (confirm/population.py)
        ctx.log_history(pre[1])
        return pre
    with ctx.clock.part("build_compile"):
        train = ctx.batches(seed, distilled=False)
        _, student = ctx.compiled.get(
            ctx.compile_key("scratch", width, recipe), lambda: ctx.fresh(width, seed),
            lambda s: compile_plain(s, recipe.optimizer_for(ctx.transfer_examples), jit_compile=ctx.jit,
                                    steps_per_execution=ctx.cfg.training.steps_per_execution),
            start=(width, seed))
    t0 = time.perf_counter()
    try:
        with ctx.clock.part("fit"):
            history = student.fit(train, epochs=recipe.epochs, verbose=0, shuffle=False,
                                  callbacks=[ctx.validation(student, every_epoch, batch_means=False),
                                             interrupt.StopOnInterrupt(), DivergenceGuard(), *callbacks]).history
    finally:
        ctx.fit_seconds += time.perf_counter() - t0
    ctx.count_training(student, len(history["loss"]))
    return student, history


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
    method = method or Method(None, temperature, alpha)
    pre = ctx.pretrained.pop(ctx.run_key("distilled", width, seed, recipe, method.temperature, method.alpha,
                                         method.name), None)
    if pre is not None:  # trained in a population (confirm/population.py)
        ctx.log_history(pre[1])
        if not math.isfinite(float(pre[1]["loss"][-1])):
            raise Diverged("training loss is not finite at the end of training")
        return pre
    teacher = ctx.teacher.members if ctx.online or method.spec.needs_teacher else None
    steps_per_epoch = schedules.steps(ctx.transfer_examples, recipe.batch_size, 1)

    def compile_distiller(s: keras.Model) -> Distiller:
        d = Distiller(s, teacher, temperature=method.temperature, alpha=method.alpha, method=method,
                      steps_per_epoch=steps_per_epoch, masked=bool(ctx.unlabeled_examples))
        d.compile(optimizer=recipe.optimizer_for(ctx.distill_examples), jit_compile=ctx.jit,
                  steps_per_execution=ctx.cfg.training.steps_per_execution)
        return d

    with ctx.clock.part("build_compile"):
        train = ctx.batches(seed)
        distiller, student = ctx.compiled.get(ctx.compile_key("distilled", width, recipe, method.graph_name()),
                                              lambda: ctx.fresh(width, seed), compile_distiller, start=(width, seed))
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
