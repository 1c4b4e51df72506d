"""The confirmation's runs of one configuration trained together: a population per (configuration, arm).

Every confirmation run of one configuration has the same shape: only the seed (initial weights,
batch order, jitter) and the loss (distilled or scratch) differ. `train` builds each seed's fresh
student and batches exactly as a lone run would (`Context.inputs`), stacks them into one
`Population` (distill/population.py) whose members are the seeds' distilled students and their
scratch twins, trains it once, and leaves each member, copied back into a plain Keras student with
its own history, in `ctx.pretrained`, where the run that would train it takes it. Everything after
training (scoring, MLflow runs, caches) is the lone runs' own code.

A distilled member and its twin at one seed share their initial weights and one batch stream (two
iterators of one dataset would each draw their own reshuffle seed), so the pairing holds.
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np
import tensorflow as tf

from harness.confirm import keys
from harness.distill import precision
from harness.distill.methods import Method
from harness.distill.models import build_student
from harness.distill.population import Population
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.training import interrupt, twin
from harness.training.context import Context
from harness.training.run import recipe_of
from harness.training.validation import scores

log = logging.getLogger(__name__)

_HISTORY = {"loss": "member_loss", "hard_loss": "member_hard", "soft_loss": "member_soft",
            "accuracy": "member_accuracy"}


class _Histories(keras.callbacks.Callback):
    """Each member's per-epoch training figures, read from the population's vector metrics, and a
    progress line after an epoch when `PROGRESS_EVERY_S` have passed since the last (a population of
    10 CNN students can train for minutes in one `fit`; an MLP population's short epochs stay quiet)."""

    PROGRESS_EVERY_S = 30.0

    def __init__(self, pop: Population, distilled: list[bool], width: int):
        super().__init__()
        self.pop, self.out = pop, [{k: [] for k in _HISTORY if d or k in ("loss", "accuracy")} for d in distilled]
        self.width, self.t0 = width, time.perf_counter()
        self.said = self.t0

    def on_epoch_end(self, epoch, logs=None):
        values = {k: getattr(self.pop, m).result().numpy() for k, m in _HISTORY.items()}
        for i, h in enumerate(self.out):
            for k in h:
                h[k].append(float(values[k][i]))
        now = time.perf_counter()
        if now - self.said >= self.PROGRESS_EVERY_S:
            self.said = now
            log.info("confirmation: width %d, %d runs together, epoch %d/%d (%.0f s)", self.width, len(self.out),
                     epoch + 1, self.params.get("epochs"), now - self.t0)


def prepare(ctx: Context, r: TrialRecord, seeds: list[int], m: Method) -> None:
    """Train together the runs of configuration `r` under method `m` at `seeds` that no cache holds
    yet. Nothing when the file says `confirm.together: false` or its students cannot be stacked (the
    log says why). Under a method whose class does not stack (`stacks`; all but kd) only the scratch twins
    are stacked (their loss is kd's at alpha 1: plain cross-entropy), so a twin keyed as trained
    together always was."""
    if not ctx.together():
        if ctx.cfg.confirm.together:
            log.info("confirmation: trial %d's runs train one by one: %s", r.number, ctx.stackable)
        return
    recipe = recipe_of(ctx, r)
    distilled = [(s, m.temperature, m.alpha) for s in seeds if not keys.target(ctx, r, s, m).exists()]
    if not m.spec.stacks and distilled:
        log.info("confirmation: trial %d's %s runs train one by one (%s does not train as a population); "
                 "their twins together", r.number, m.name, m.name)
        distilled = []
    scratch = [s for s in seeds if not twin.path(ctx.ws.workdir, ctx.cfg, r.width, s, recipe, True,
                                                    data=ctx.splits.digest).exists()
               and ctx.run_key("scratch", r.width, s, recipe) not in ctx.pretrained]
    train(ctx, r.width, recipe, distilled, scratch)


def train(ctx: Context, width: int, recipe: Recipe, distilled: list[tuple[int, float, float]],
          scratch: list[int]) -> None:
    """Train these runs of one width and recipe as one population; leave them in `ctx.pretrained`.

    `distilled`: (seed, temperature, alpha) per distilled run; `scratch`: the seeds of the scratch
    twins. Every member's initial weights and batches come from its seed alone, as its lone run's.
    """
    members = [(s, t, a, True) for s, t, a in distilled] + [(s, 1.0, 1.0, False) for s in scratch]
    if not members:
        return
    seeds = sorted({m[0] for m in members})
    inputs = {s: ctx.inputs(width, s) for s in seeds}  # (fresh student, its batches with teacher logits)
    pop = Population([inputs[s][0] for s, *_ in members], [m[1] for m in members], [m[2] for m in members])
    pop.compile(optimizer=recipe.optimizer_for(ctx.transfer_examples), jit_compile=ctx.jit,
                steps_per_execution=ctx.cfg.training.steps_per_execution)
    index = [seeds.index(s) for s, *_ in members]

    def stack(*streams):
        return (tf.stack([streams[i][0] for i in index]),
                {k: tf.stack([streams[i][1][k] for i in index]) for k in ("labels", "teacher_logits")})

    batches = tf.data.Dataset.zip(tuple(inputs[s][1] for s in seeds)).map(stack)
    histories = _Histories(pop, [m[3] for m in members], width)
    log.info("confirmation: %d run(s) of width %d trained together (%d distilled, %d scratch)",
             len(members), width, len(distilled), len(scratch))
    t0 = time.perf_counter()
    pop.fit(batches, epochs=recipe.epochs, verbose=0, shuffle=False,
            callbacks=[interrupt.StopOnInterrupt(), histories])
    ctx.fit_seconds += time.perf_counter() - t0
    interrupt.check()  # Ctrl-C stopped it: nothing half-trained is handed on
    labels = ctx.splits.validation.labels
    for i, (seed, t, a, is_distilled) in enumerate(members):
        student = pop.copy_into(i, build_student(ctx.cfg.student, width, ctx.splits.image_shape,
                                                 ctx.splits.num_classes, dtype=precision.policy(ctx.precision),
                                                 source=ctx.cfg.source))
        history = histories.out[i]
        if len(history["loss"]) == recipe.epochs:  # validated once, at the end, as the lone runs are
            loss, acc = scores(ctx.forward(student, ctx.val_images), labels, batch_means=is_distilled)
            history.update(val_loss=[loss], val_accuracy=[acc])
        ctx.count_training(student, len(history["loss"]))
        role = "distilled" if is_distilled else "scratch"
        ctx.pretrained[ctx.run_key(role, width, seed, recipe, t, a)] = (student, history)
    if not np.all([np.isfinite(h["loss"][-1]) for h in histories.out if h["loss"]]):
        log.warning("confirmation: a member of width %d diverged; its run reports it", width)
