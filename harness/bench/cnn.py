"""`harness bench` CNN student rows: what the compression study's students cost, against the matmul rate.

Two families at sizes from about 5 K to 50 K parameters (the plain family's include the compression
study's two, 7,274 and 15,050 parameters), on Fashion-MNIST's
28x28x1 transfer images held in memory (the first `limit`), distilled from cached teacher logits
(seeded random logits: their values do not change a step's cost) at batch 128, 32 steps per
execution, as a study trains its students:

* `cnn`        the harness's own `cnn` student family (`distill/models.py:cnn`): three 3x3 conv
               blocks of w, 2w, 4w filters with 2x2 max-pooling, global average pooling, a 32-unit head;
* `separable`  MobileNet-style (Howard et al. 2017, arXiv:1704.04861): a 3x3 stem convolution, then
               depthwise 3x3 + batch norm + ReLU + pointwise 1x1 + batch norm + ReLU blocks of
               (32, 64, 64, 128, 128) x `alpha` channels, strides (1, 2, 1, 2, 1), global average
               pooling, the logits. Built here from Keras layers (`DepthwiseConv2D`, `Conv2D`), its batch
               norms trained through one fused kernel as the harness's own students' (`batch_norm.fused`).

Each (family, size) is timed with XLA on and off (XLA on over a tenth of the examples for
`separable`, see `XLA_SHARE`): one untimed warm-up epoch each, then the
variants and a float32 matmul sample (`pairs._matmul`) alternated, medians. Training FLOPs are 3x
the forward FLOPs counted from the layer shapes (`models.flops_per_example`); `share` is GFLOP/s
over the same process's matmul GFLOP/s. Then, where the family can be stacked
(`distill/population.py`), K = 10 members trained together against 10 lone runs, each on its own
seeded batches, over `population_limit` examples (speed-up = lone / together).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from harness.bench.pairs import MATMUL_N, MATMUL_PRODUCTS, _matmul, alternate
from harness.bench.population import BATCH_SIZE, lone_epochs, stacked, streams
from harness.config import DatasetConfig
from harness.data import sources
from harness.distill import models
from harness.distill.batch_norm import fused as fused_batch_norm
from harness.distill.distiller import Distiller
from harness.distill.population import Population, plan

log = logging.getLogger(__name__)

STEPS_PER_EXECUTION = 32
K = 10
# The knob of each size: `cnn`'s first-block filters, `separable`'s width multiplier.
SIZES = {"cnn": (6, 8, 12, 22), "separable": (0.3, 0.75, 1.15)}
# XLA-on epochs of a family over this share of the examples: XLA's CPU depthwise convolutions ran
# 10-20x slower than TensorFlow's own (separable 0.3: 66-92 s an epoch of 10,000 against 6-10 s,
# loaded machine), so a full epoch of each would take most of the bench's time.
XLA_SHARE = {"cnn": 1.0, "separable": 0.1}
BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1))  # (pointwise channels at alpha 1, stride)


def plain_cnn(input_shape, num_classes: int, width: int, name: str = "student") -> keras.Model:
    """The harness's `cnn` student family at depth 3, gap pooling, head 32."""
    return models.cnn(input_shape, num_classes, [width, 2 * width, 4 * width], head=32, pooling="gap", name=name)


def separable_cnn(input_shape, num_classes: int, alpha: float, name: str = "student") -> keras.Model:
    """MobileNet-v1-style student (see the module docstring); channels are rounded to multiples of 4."""
    def ch(c):
        return max(4, int(round(c * alpha / 4)) * 4)

    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Conv2D(ch(16), 3, padding="same", use_bias=False, name="stem")(x)
    x = fused_batch_norm(keras.layers.BatchNormalization(name="stem_bn"))(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, (c, stride) in enumerate(BLOCKS):
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw_{i}")(x)
        x = fused_batch_norm(keras.layers.BatchNormalization(name=f"dw_bn_{i}"))(x)
        x = keras.layers.ReLU(name=f"dw_relu_{i}")(x)
        x = keras.layers.Conv2D(ch(c), 1, use_bias=False, name=f"pw_{i}")(x)
        x = fused_batch_norm(keras.layers.BatchNormalization(name=f"pw_bn_{i}"))(x)
        x = keras.layers.ReLU(name=f"pw_relu_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


BUILDERS = {"cnn": plain_cnn, "separable": separable_cnn}


def student(family: str, size, seed: int, input_shape, num_classes: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return BUILDERS[family](input_shape, num_classes, size)


def _distiller(model: keras.Model, jit: bool) -> Distiller:
    d = Distiller(model, temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit, steps_per_execution=STEPS_PER_EXECUTION)
    return d




def _epoch(model, ds):
    return lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)


def _rows(family: str, size, examples, n: int, shape, num_classes: int, repeats: int, product) -> list[dict]:
    """XLA on and off for one (family, size), the matmul alternated with them. `examples(m)`: the
    first m examples as a dataset; XLA on runs over `XLA_SHARE[family]` of the n."""
    model = student(family, size, 0, shape, num_classes)
    params, flops = models.param_count(model), 3 * models.flops_per_example(model)
    counts = {True: max(BATCH_SIZE, int(n * XLA_SHARE[family])), False: n}
    fits = {f"{family} {size} XLA {'on' if jit else 'off'}": _epoch(_distiller(
        student(family, size, 0, shape, num_classes), jit), streams(examples(counts[jit]), [0])[0])
        for jit in (True, False)}
    fits["matmul"] = lambda: [product() for _ in range(MATMUL_PRODUCTS)]
    log.info("cnn bench: %s size %s, %d params, %.2f MFLOP per training example", family, size, params, flops / 1e6)
    t = alternate(fits, repeats)
    matmul = 2 * MATMUL_N**3 * MATMUL_PRODUCTS / t.pop("matmul") / 1e9
    rows = []
    for (name, s), jit in zip(t.items(), (True, False)):
        g = flops * counts[jit] / s / 1e9
        rows.append({"family": family, "size": size, "params": params, "train_flops_per_example": float(flops),
                     "xla": jit, "examples": counts[jit], "batch_size": BATCH_SIZE, "epoch_s": s, "gflops": g,
                     "matmul_gflops": matmul, "share": g / matmul})
    return rows


def _population_row(family: str, size, examples, n: int, shape, num_classes: int, repeats: int, jit: bool,
                    product, k: int = K) -> dict:
    """k members together against k lone runs (each on its own seeded batches); s per epoch of all k."""
    seeds = list(range(1, k + 1))
    lone_streams = streams(examples, seeds)
    lone = [(_distiller(student(family, size, s, shape, num_classes), jit), ds) for s, ds in zip(seeds, lone_streams)]
    pop = Population([student(family, size, s, shape, num_classes) for s in seeds], [4.0] * k, [0.1] * k)
    pop.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit, steps_per_execution=STEPS_PER_EXECUTION)
    t = alternate({"lone": lone_epochs(lone), "together": _epoch(pop, stacked(examples, seeds)),
                   "matmul": lambda: [product() for _ in range(MATMUL_PRODUCTS)]}, repeats)
    model = lone[0][0].student
    flops = 3 * models.flops_per_example(model)
    matmul = 2 * MATMUL_N**3 * MATMUL_PRODUCTS / t["matmul"] / 1e9
    g = k * flops * n / t["together"] / 1e9
    return {"family": family, "size": size, "params": models.param_count(model),
            "train_flops_per_example": float(flops), "k": k, "xla": jit,
            "examples": n, "batch_size": BATCH_SIZE, "epoch_s": t["together"], "lone_epoch_s": t["lone"],
            "speedup": t["lone"] / t["together"], "gflops": g, "matmul_gflops": matmul, "share": g / matmul}


def run_cnn(families=tuple(SIZES), repeats: int = 3, limit: int = 10_000, population_limit: int = 2_000,
            population: bool = True, sizes: dict | None = None, k: int = K) -> list[dict]:
    """The `cnn_students` rows (see the module docstring): one per (family, size, XLA), then one
    per stackable (family, size) population of `k` at the faster XLA setting of its lone rows (by
    seconds per example). `sizes`: {family: knobs} instead of `SIZES` (tests use small ones).

    Each row: family, size (the knob), params, train_flops_per_example, xla, examples, batch_size,
    epoch_s (median seconds per epoch over `examples`; a population's: of all its members), gflops,
    matmul_gflops (float32, alternated with it), share (gflops / matmul_gflops); a population row
    also k, lone_epoch_s (k lone runs one after another) and speedup (lone / together)."""
    sizes = sizes or SIZES
    splits = sources.load_splits(DatasetConfig(limit=limit), seed=0)
    images, labels = splits.transfer.images[:limit], splits.transfer.labels[:limit]
    logits = np.random.default_rng(0).normal(0, 4, (len(labels), splits.num_classes)).astype(np.float32)

    def examples(m):
        return tf.data.Dataset.from_tensor_slices((images[:m], {"labels": labels[:m], "teacher_logits": logits[:m]}))

    shape, classes = splits.image_shape, splits.num_classes
    product = _matmul(MATMUL_N)
    rows = []
    for family in families:
        for size in sizes[family]:
            lone = _rows(family, size, examples, len(images), shape, classes, repeats, product)
            rows += lone
            keras.backend.clear_session()
            if population and plan(student(family, size, 0, shape, classes))[1] is None:
                jit = min(lone, key=lambda r: r["epoch_s"] / r["examples"])["xla"]
                rows.append(_population_row(family, size, examples(population_limit), population_limit, shape,
                                            classes, repeats, jit, product, k))
                keras.backend.clear_session()
    return rows


def format_cnn(rows: list[dict]) -> str:
    lines = [f"cnn students (batch {BATCH_SIZE}, cached logits; s per epoch; a population's: all K members)",
             f"{'family':>10} {'params':>7} {'xla':>4} {'k':>3} {'examples':>8} {'epoch_s':>8} {'GFLOP/s':>8} "
             f"{'matmul':>7} {'share':>6} {'speed-up':>9}"]
    for r in rows:
        k = r.get("k", 1)
        speed = f"{r['speedup']:>8.2f}x" if "speedup" in r else f"{'':>9}"
        lines.append(f"{r['family']:>10} {r['params']:>7} {'on' if r['xla'] else 'off':>4} {k:>3} {r['examples']:>8} "
                     f"{r['epoch_s']:>8.2f} {r['gflops']:>8.1f} {r['matmul_gflops']:>7.0f} {r['share']:>6.2f} {speed}")
    return "\n".join(lines)
