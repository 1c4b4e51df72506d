"""`harness bench` pairs: what distillation costs per epoch, next to training from scratch.

For each teacher/student pair, in one process and on the same transfer data:

* A  the student alone, plain `fit` with cross-entropy (the baseline);
* B  the harness `Distiller` with cached teacher logits (the default mode);
* C  the harness `Distiller` with the teacher running inside the step;
* Cj C on batches jittered by up to 2 pixels: the consistent online mode
     (`student.augment` with `distillation.teacher: online`), its cost with the
     augmentation included;
* D  Keras' own `keras.distillation.Distiller` (which always runs the teacher),
     configured as a careful user would, so that it computes the same loss as B
     and C: `LogitsDistillation(loss=keras.losses.KLDivergence())`. Its default
     `loss="kl_divergence"` is a different loss (KL of the scaled logits
     themselves, without softmax or T^2; see tests/test_keras_parity.py);

all four as a study trains its students (the harness's XLA choice for the
family, 32 steps per execution), plus A with the other XLA setting (the
evidence for that choice), and one epoch of the teacher itself, trained with the study's
regularisers, with XLA on and off (`teacher.resolve_jit` picks from this).

These machines are shared and noisy, so each variant gets one untimed warm-up epoch (tracing, XLA
compilation, tf.data start-up), the variants are timed in alternation (A B C D A B C D ...) so that
a slow minute hurts all of them alike, and the report gives medians and ratios from the same run.
Throughput is set against the float32 matrix-multiply rate the same process reaches, sampled in the
same alternation, so under the same load.

Where the hardware has native bfloat16, A and B run in it too (as `training.precision:
bfloat16` trains), against the bfloat16 matmul rate: the `*_bf16` keys (else null; `bf16_note`).
"""

from __future__ import annotations

import logging
import math
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from harness.config import DatasetConfig, TeacherConfig, TrainingConfig
from harness.data import pipelines, sources
from harness.data.evaluate import predict_logits
from harness.distill import models, precision
from harness.distill.distiller import Distiller, compile_plain, make_optimizer
from harness.teacher.trained import resolve_jit

log = logging.getLogger(__name__)

BATCH_SIZE = 128
MATMUL_N, MATMUL_PRODUCTS = 2048, 5  # one matmul sample: 5 products of 2048 x 2048, ~0.2 s
TEMPERATURE, ALPHA = 4.0, 0.1  # any values do: they do not change the cost of a step
SEED = 0

# Teachers are trained with the paper's regularisers (dropout 0.5, input
# dropout 0.2, jitter 2), spelled out so that a change of TeacherConfig's
# defaults does not silently change the bench. Students have none, as
# StudentConfig's defaults. `min_ratio`: the least teacher / student forward
# FLOPs for the pair to mean anything. The mlp pair is the paper's
# (1200-1200 -> 800-800, about 2x); the cnn pair is where distillation pays: a
# teacher far dearer than the student, whose cost the cached mode hides.
_REGULARISED = {"dropout": 0.5, "input_dropout": 0.2, "jitter": 2}
PAIRS = {
    "mlp": {"teacher": TeacherConfig(family="mlp", widths=[1200, 1200], **_REGULARISED),
            "student": lambda shape, k, dtype=None: models.mlp(shape, k, [800, 800], name="student", dtype=dtype),
            "min_ratio": 1},
    "cnn": {"teacher": TeacherConfig(family="cnn", widths=[64, 128], head=256, **_REGULARISED),
            "student": lambda shape, k, dtype=None: models.cnn(shape, k, [8, 16], head=32, name="student",
                                                               dtype=dtype),
            "min_ratio": 10},
}

# In the order `format_table` prints them.
KEYS = ("scratch_epoch_s", "distill_cached_epoch_s", "distill_online_epoch_s", "distill_online_jitter_epoch_s",
        "keras_distiller_epoch_s", "B_over_A", "C_over_B", "Cj_over_B", "D_over_B", "student_xla",
        "scratch_xla_epoch_s", "scratch_noxla_epoch_s",
        "scratch_examples_per_s", "distill_examples_per_s",
        "matmul_gflops", "scratch_gflops", "distill_gflops",
        "teacher_epoch_xla_s", "teacher_epoch_noxla_s", "teacher_flops_ratio",
        "student_train_flops_per_example", "examples",
        "scratch_epoch_s_bf16", "distill_cached_epoch_s_bf16", "distill_bf16_over_float32",
        "matmul_gflops_bf16", "distill_gflops_bf16")
BF16_KEYS = KEYS[KEYS.index("scratch_epoch_s_bf16"):]  # null where the hardware has no native bfloat16


def _matmul(n: int, dtype=tf.float32):
    """A function computing one n x n product in `dtype`; the sum keeps the result
    on the device, so a timing holds the product and not a 16 MB copy."""
    a = tf.cast(tf.random.normal([n, n], seed=SEED), dtype)
    b = tf.cast(tf.random.normal([n, n], seed=SEED + 1), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    product().numpy()  # tracing and thread-pool start
    return lambda: product().numpy()


def alternate(fits: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each `fits[name]()` (one epoch), timed in alternation.

    One untimed call each first: it absorbs tracing and XLA compilation.
    """
    for name, fit in fits.items():
        t0 = time.perf_counter()
        fit()
        log.info("  %s warm-up %.1f s", name, time.perf_counter() - t0)
    times = {name: [] for name in fits}
    for r in range(repeats):
        for name, fit in fits.items():
            t0 = time.perf_counter()
            fit()
            times[name].append(time.perf_counter() - t0)
            log.info("  %s round %d/%d %.2f s", name, r + 1, repeats, times[name][-1])
    return {name: statistics.median(t) for name, t in times.items()}


def _epoch(model: keras.Model, ds):
    return lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)


def keras_distiller(teacher: keras.Model, student: keras.Model, loss=None,
                    **compile_kwargs) -> keras.Model:
    """Variant D: Keras' own `keras.distillation.Distiller`, compiled like B and C.

    `loss` is LogitsDistillation's; None gives `keras.losses.KLDivergence()`, with
    which Keras computes T^2 * KL(softmax(t/T) || softmax(s/T)), the harness's
    soft term. (Its default string "kl_divergence" would apply KL to the scaled
    logits instead: a cheaper, different loss.)
    """
    d = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=TEMPERATURE, loss=keras.losses.KLDivergence() if loss is None else loss),
        student_loss_weight=ALPHA)  # total = ALPHA * hard + (1 - ALPHA) * soft, as B and C
    d.compile(optimizer=make_optimizer("adam", 1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], **compile_kwargs)
    return d


def _teacher_epochs(tcfg: TeacherConfig, images, labels, num_classes: int,
                    repeats: int) -> tuple[float, float]:
    """Median epoch seconds of the teacher trained as a study trains it (dropout,
    jitter), XLA on and off. One fresh model per setting, so neither inherits
    the other's compilation."""
    ds = pipelines.pipeline(images, labels, tcfg.batch_size, shuffle_seed=SEED, max_shift=tcfg.jitter)
    fits = {}
    for jit in (True, False):
        keras.utils.set_random_seed(SEED)
        m = models.build_teacher(tcfg, images.shape[1:], num_classes, seed=SEED)
        compile_plain(m, tcfg.optimizer, tcfg.learning_rate, jit_compile=jit)
        fits[f"teacher XLA {'on' if jit else 'off'}"] = _epoch(m, ds)
    return tuple(alternate(fits, repeats).values())


def _bench_pair(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
                repeats: int) -> dict[str, float]:
    spec, shape = PAIRS[name], images.shape[1:]
    tcfg: TeacherConfig = spec["teacher"]

    def student(dtype: str | None = None) -> keras.Model:
        keras.utils.set_random_seed(SEED)  # every variant starts from the same weights
        return spec["student"](shape, num_classes, dtype)

    keras.utils.set_random_seed(SEED)
    teacher = models.build_teacher(tcfg, shape, num_classes, seed=SEED)
    ratio = models.flops_per_example(teacher) / models.flops_per_example(student())
    if ratio < spec["min_ratio"]:
        raise ValueError(f"pair {name}: the teacher has only {ratio:.1f}x the student's forward "
                         f"FLOPs; make it at least {spec['min_ratio']}x")
    log.info("pair %s: teacher %s %s, %.1fx the student's forward FLOPs", name, tcfg.family,
             tcfg.widths, ratio)

    # Pipelines and models are built once, outside the timing; the cached
    # logits are computed once too, as a study does before its trials.
    plain_ds = pipelines.pipeline(images, labels, BATCH_SIZE, shuffle_seed=SEED)
    cached = {"labels": labels, "teacher_logits": predict_logits(teacher, images)}
    cached_ds = pipelines.pipeline(images, cached, BATCH_SIZE, shuffle_seed=SEED)
    jitter_ds = pipelines.pipeline(images, labels, BATCH_SIZE, shuffle_seed=SEED, max_shift=2)

    # Every variant runs as a study runs its students: the XLA choice the
    # harness makes for this family here, and the study's steps per execution.
    jit = resolve_jit(None, name)
    spe = TrainingConfig().steps_per_execution
    opts = {"jit_compile": jit, "steps_per_execution": spe}
    a = compile_plain(student(), "adam", 1e-3, **opts)
    b = Distiller(student(), temperature=TEMPERATURE, alpha=ALPHA)
    b.compile(optimizer=make_optimizer("adam", 1e-3), **opts)
    c = Distiller(student(), teacher, temperature=TEMPERATURE, alpha=ALPHA)
    c.compile(optimizer=make_optimizer("adam", 1e-3), **opts)
    d = keras_distiller(teacher, student(), **opts)

    # A with the other XLA setting: the evidence for the harness's choice.
    a_other = compile_plain(student(), "adam", 1e-3, jit_compile=not jit, steps_per_execution=spe)
    product = _matmul(MATMUL_N)
    fits = {"A scratch": _epoch(a, plain_ds), "B cached": _epoch(b, cached_ds),
            "C online": _epoch(c, plain_ds), "Cj online, jitter 2": _epoch(c, jitter_ds),
            "D keras": _epoch(d, plain_ds), "A other XLA": _epoch(a_other, plain_ds),
            "matmul": lambda: [product() for _ in range(MATMUL_PRODUCTS)]}
    bf16 = precision.resolve("auto") == "bfloat16"
    if bf16:  # A and B as `training.precision: bfloat16` trains them, and the bfloat16 matmul rate
        policy = precision.policy("bfloat16")
        a16 = compile_plain(student(policy), "adam", 1e-3, **opts)
        b16 = Distiller(student(policy), temperature=TEMPERATURE, alpha=ALPHA)
        b16.compile(optimizer=make_optimizer("adam", 1e-3), **opts)
        product16 = _matmul(MATMUL_N, tf.bfloat16)
        fits.update({"A bf16": _epoch(a16, plain_ds), "B bf16": _epoch(b16, cached_ds),
                     "matmul bf16": lambda: [product16() for _ in range(MATMUL_PRODUCTS)]})

    log.info("pair %s: timing %s (XLA %s; A other: XLA %s); %d examples", name, ", ".join(fits),
             "on" if jit else "off", "off" if jit else "on", len(images))
    t = alternate(fits, repeats)
    scratch_s, cached_s, online_s, jitter_s, keras_s, scratch_other_s, matmul_s = list(t.values())[:7]
    xla_s, noxla_s = (scratch_s, scratch_other_s) if jit else (scratch_other_s, scratch_s)
    gflops = 2 * MATMUL_N**3 * MATMUL_PRODUCTS / matmul_s / 1e9

    log.info("pair %s: timing the teacher, XLA on and off", name)
    teacher_xla_s, teacher_noxla_s = _teacher_epochs(tcfg, images, labels, num_classes, repeats)

    n = len(images)
    train_flops = 3 * models.flops_per_example(a)  # forward + two backward products
    if bf16:
        cached16_s = t["B bf16"]
        low = {"scratch_epoch_s_bf16": t["A bf16"], "distill_cached_epoch_s_bf16": cached16_s,
               "distill_bf16_over_float32": cached16_s / cached_s,
               "matmul_gflops_bf16": 2 * MATMUL_N**3 * MATMUL_PRODUCTS / t["matmul bf16"] / 1e9,
               "distill_gflops_bf16": train_flops * n / cached16_s / 1e9}
    else:
        low = {k: None for k in BF16_KEYS} | {"bf16_note": "no native bfloat16 here (no GPU of compute capability "
                                               "8.0+, no avx512_bf16 or amx_bf16 CPU flag): not timed"}
    return {
        "scratch_epoch_s": scratch_s, "distill_cached_epoch_s": cached_s,
        "distill_online_epoch_s": online_s, "distill_online_jitter_epoch_s": jitter_s,
        "keras_distiller_epoch_s": keras_s,
        "B_over_A": cached_s / scratch_s, "C_over_B": online_s / cached_s, "Cj_over_B": jitter_s / cached_s,
        "D_over_B": keras_s / cached_s, "student_xla": float(jit),
        "scratch_xla_epoch_s": xla_s, "scratch_noxla_epoch_s": noxla_s,
        "scratch_examples_per_s": n / scratch_s, "distill_examples_per_s": n / cached_s,
        "matmul_gflops": gflops,
        "scratch_gflops": train_flops * n / scratch_s / 1e9,
        # The cached teacher costs nothing per step, so B does the same work as A.
        "distill_gflops": train_flops * n / cached_s / 1e9,
        "teacher_epoch_xla_s": teacher_xla_s, "teacher_epoch_noxla_s": teacher_noxla_s,
        "teacher_flops_ratio": ratio, "student_train_flops_per_example": float(train_flops),
        "examples": float(n), **low,
    }


def run_pairs(pairs=("mlp", "cnn"), repeats: int = 3, limit: int | None = None) -> dict:
    """Time every pair on Fashion-MNIST's transfer split (the first `limit` examples).

    Returns {pair: {metric: value}} with the keys of `KEYS`; times are median
    seconds per epoch, ratios are of those medians.
    """
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown:
        raise ValueError(f"unknown pair(s) {unknown}; choose from {sorted(PAIRS)}")
    splits = sources.load_splits(DatasetConfig(limit=limit), seed=SEED)  # with a limit: only that much is read
    images, labels = splits.transfer.images[:limit], splits.transfer.labels[:limit]
    results = {}
    for name in pairs:
        results[name] = _bench_pair(name, images, labels, splits.num_classes, repeats)
        keras.backend.clear_session()  # the next pair starts with a clean graph
    return results


def format_table(result: dict) -> str:
    """The result of `run_pairs` as a text table: one row per metric, one column per pair."""
    pairs = list(result)
    keys = [k for k in KEYS if any(k in result[p] for p in pairs)]
    width = max(len(k) for k in keys)
    lines = [f"{'':{width}}" + "".join(f"{p:>12}" for p in pairs)]
    for k in keys:
        cells = []
        for p in pairs:
            v = result[p].get(k, math.nan)
            if v is None:  # a bfloat16 figure where the hardware has none (see bf16_note)
                cells.append(f"{'-':>12}")
            else:
                cells.append(f"{v:>12.4g}" if abs(v) < 1e6 else f"{v:>12.3e}")
        lines.append(f"{k:{width}}" + "".join(cells))
    return "\n".join(lines)
