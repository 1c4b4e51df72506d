"""`harness bench` population rows: K students of width w trained together against K lone runs.

For each K in {2, 5, 10} and width w in {16, 64, 128} (2-layer MLP students, the default study's
family, distilled from cached teacher logits at batch 128 with the harness's XLA choice and 32
steps per execution), in one process and on the same transfer examples:

* lone:     K `Distiller` epochs one after another (what `confirm.together: false` trains);
* together: one epoch of a K-member `Population` (distill/population.py), each member on its own
            seeded batches, as the confirmation trains them.

Both get one untimed warm-up epoch (tracing, XLA), then are timed in alternation (lone,
together, lone, together, ...) and reported as median seconds per epoch of all K students, with
the ratio lone / together (the speed-up) from the same run.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from harness.bench.pairs import alternate
from harness.config import DatasetConfig
from harness.data import pipelines, sources
from harness.distill.distiller import Distiller
from harness.distill.models import mlp
from harness.distill.population import Population

log = logging.getLogger(__name__)

SIZES = (2, 5, 10)
WIDTHS = (16, 64, 128)
BATCH_SIZE = 128
STEPS_PER_EXECUTION = 32


def _student(width: int, seed: int, image_shape, num_classes: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return mlp(image_shape, num_classes, [width, width], name="student")


def streams(examples: tf.data.Dataset, seeds: list[int]) -> list[tf.data.Dataset]:
    """One seeded batch stream per seed, each as a lone run of that seed gets it."""
    out = []
    for s in seeds:
        keras.utils.set_random_seed(s)  # as `Context.inputs`: the shuffle's op seed pairs with the global one
        out.append(pipelines.batches(examples, BATCH_SIZE, shuffle_seed=s))
    return out


def stacked(examples: tf.data.Dataset, seeds: list[int]) -> tf.data.Dataset:
    """The same streams zipped into a population's batches: images [K, B, ...], targets [K, B, ...]."""
    return tf.data.Dataset.zip(tuple(streams(examples, seeds))).map(
        lambda *xy: (tf.stack([x for x, _ in xy]),
                     {key: tf.stack([y[key] for _, y in xy]) for key in ("labels", "teacher_logits")}))


def lone_epochs(lone: list) -> callable:
    """A timer's body: one epoch of every (Distiller, stream) pair, one after another."""
    def epoch():
        for d, ds in lone:
            d.fit(ds, epochs=1, verbose=0, shuffle=False)
    return epoch


def _row(k: int, width: int, examples: tf.data.Dataset, image_shape, num_classes: int, repeats: int) -> dict:
    seeds = list(range(1, k + 1))
    lone = []
    for s, ds in zip(seeds, streams(examples, seeds)):
        d = Distiller(_student(width, s, image_shape, num_classes), temperature=2.0, alpha=0.5)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=STEPS_PER_EXECUTION)
        lone.append((d, ds))
    pop = Population([_student(width, s, image_shape, num_classes) for s in seeds], [2.0] * k, [0.5] * k)
    pop.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=STEPS_PER_EXECUTION)
    together = stacked(examples, seeds)
    times = alternate({"lone": lone_epochs(lone), "together": lambda: pop.fit(together, epochs=1, verbose=0,
                                                                                shuffle=False)}, repeats)
    return {"k": k, "width": width, "lone_epoch_s": times["lone"], "together_epoch_s": times["together"],
            "speedup": times["lone"] / times["together"]}


def run_population(sizes=SIZES, widths=WIDTHS, repeats: int = 3, limit: int = 10_000) -> list[dict]:
    """One row per (K, width): median seconds per epoch over the first `limit` transfer examples
    (Fashion-MNIST), lone and together, and the speed-up. Teacher logits: seeded random, since
    a cached teacher's logits cost the step the same whatever their values."""
    splits = sources.load_splits(DatasetConfig(limit=limit), seed=0)
    images, labels = splits.transfer.images[:limit], splits.transfer.labels[:limit]
    logits = np.random.default_rng(0).normal(0, 4, (len(labels), splits.num_classes)).astype(np.float32)
    examples = tf.data.Dataset.from_tensor_slices((images, {"labels": labels, "teacher_logits": logits}))
    rows = []
    for width in widths:
        for k in sizes:
            log.info("population bench: K=%d, width %d", k, width)
            rows.append(_row(k, width, examples, splits.image_shape, splits.num_classes, repeats))
            keras.backend.clear_session()
    return rows


def format_population(rows: list[dict]) -> str:
    lines = [f"population (2-layer MLP, batch {BATCH_SIZE}; s per epoch of all K students)",
             f"{'K':>3} {'width':>6} {'lone':>8} {'together':>9} {'speed-up':>9}"]
    lines += [f"{r['k']:>3} {r['width']:>6} {r['lone_epoch_s']:>8.2f} {r['together_epoch_s']:>9.2f} "
              f"{r['speedup']:>8.2f}x" for r in rows]
    return "\n".join(lines)
