"""Training one distilled student: its fresh weights and batches from its seed, the Distiller under its
method, fitted with the guards (validation, Ctrl-C, divergence); or taken from a population."""

from __future__ import annotations

import math
import time

import keras

from harness.distill import schedules
from harness.distill.distiller import Distiller
from harness.distill.guard import Diverged, DivergenceGuard
from harness.distill.methods import Method
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.training import interrupt
from harness.training.context import Context


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
        fresh, train = ctx.inputs(width, seed)
        distiller, student = ctx.compiled.get(ctx.compile_key("distilled", width, recipe, method.graph_name()), fresh,
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
