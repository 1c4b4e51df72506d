"""`harness bench --precision-accuracy`: what bfloat16 costs in accuracy, and what it saves in time.

The default study's set-up (`studies/fashion_mnist.yaml`: its CNN teacher, from
the working directory's teacher cache when there; its recipe, 10 epochs of Adam
at 1e-3 under a cosine schedule, batch 128) distils a 2 x `width` MLP student at
one temperature and alpha, over `seeds`, in float32 and in bfloat16, through the
study's own training path (`Context`, `trial.train_distilled`). The precisions
alternate seed by seed, so a slow minute hurts both alike. The teacher is the
float32 one for both: only the student's precision differs.

Reported per precision: the test accuracy per seed, its mean, standard
deviation and range, and the median epoch time (each run's first epoch, which
holds tracing and compilation, and its last, which holds the validation pass, left out). `within_float32_spread` says whether
the bfloat16 mean lies inside the float32 seeds' range.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time

import keras

from harness import config
from harness.data import sources
from harness.data.evaluate import accuracy, predict_logits
from harness.distill import precision
from harness.distill.recipe import Recipe
from harness.teacher.trained import load_or_train
from harness.training.context import Context
from harness.training.run import train_distilled
from harness.training.workspace import Workspace

log = logging.getLogger(__name__)
STUDY = "studies/fashion_mnist.yaml"


class _EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


def _summary(accs: list[float], epochs: list[float]) -> dict:
    return {"test_accuracy": accs, "mean": statistics.mean(accs), "std": statistics.stdev(accs),
            "min": min(accs), "max": max(accs), "epoch_s": statistics.median(epochs)}


def run(workdir=".", study_file: str = STUDY, width: int = 256, temperature: float = 2.0, alpha: float = 0.5,
        seeds=(1, 2, 3)) -> dict:
    base = config.load(study_file)
    ws = Workspace.resolve(workdir)
    splits = sources.load_splits(base.dataset, base.seed, source=base.source)
    teacher = load_or_train(base, splits, ws.teacher_cache)  # float32: the study's own teacher
    log.info("precision accuracy: teacher %s (%s), test acc %.4f", teacher.key,
             "from cache" if teacher.from_cache else "trained", teacher.test_accuracy)
    contexts = {}
    for p in ("float32", "bfloat16"):
        cfg = dataclasses.replace(base, training=dataclasses.replace(base.training, precision=p))
        contexts[p] = Context(cfg, ws, splits, teacher, experiment_id="", parent_run_id="")
    recipe = Recipe.of(base.training)
    accs = {p: [] for p in contexts}
    epochs = {p: [] for p in contexts}
    for seed in seeds:
        for p, ctx in contexts.items():
            timer = _EpochTimes()
            student, _ = train_distilled(ctx, width, seed, temperature, alpha, recipe, [timer], every_epoch=False)
            acc = accuracy(predict_logits(student, splits.test.images), splits.test.labels)
            accs[p].append(acc)
            epochs[p] += timer.seconds[1:-1]  # not the first (compilation) nor the last (validation)
            log.info("precision accuracy: %s seed %d: test acc %.4f, epochs %s s", p, seed, acc,
                     " ".join(f"{s:.2f}" for s in timer.seconds))
    f32, bf16 = _summary(accs["float32"], epochs["float32"]), _summary(accs["bfloat16"], epochs["bfloat16"])
    return {"study": study_file, "width": width, "temperature": temperature, "alpha": alpha,
            "seeds": list(seeds), "epochs": recipe.epochs, "teacher_key": teacher.key,
            "teacher_from_cache": teacher.from_cache, "native_bf16": precision.resolve("auto") == "bfloat16",
            "float32": f32, "bfloat16": bf16, "bf16_over_float32_epoch": bf16["epoch_s"] / f32["epoch_s"],
            "within_float32_spread": f32["min"] <= bf16["mean"] <= f32["max"]}


def format_result(r: dict) -> str:
    lines = [f"2x{r['width']} MLP distilled (T {r['temperature']:g}, alpha {r['alpha']:g}), {r['epochs']} epochs, "
             f"seeds {r['seeds']}, teacher {r['teacher_key']}; test accuracy (%) and median epoch seconds:"]
    for p in ("float32", "bfloat16"):
        s = r[p]
        lines.append(f"  {p:9s} {' '.join(f'{100 * a:.2f}' for a in s['test_accuracy'])}   mean {100 * s['mean']:.2f}"
                     f" sd {100 * s['std']:.2f} range {100 * s['min']:.2f}-{100 * s['max']:.2f}   "
                     f"epoch {s['epoch_s']:.2f} s")
    lines.append(f"  bf16 / float32 epoch {r['bf16_over_float32_epoch']:.2f}; bf16 mean within the float32 range: "
                 f"{r['within_float32_spread']}")
    return "\n".join(lines)
