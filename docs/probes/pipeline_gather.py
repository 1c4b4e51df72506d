"""The transfer pipeline: per-example shuffle (`pipelines.batches`) against shuffled indices gathered
per batch from tensors in memory. Checks that both give the same batches, then times iterating an
epoch alone and a plain CNN student's epoch (w = 8, 12) on each, alternated.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/pipeline_gather.py` (about 1 minute)."""
import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import numpy as np, keras, tensorflow as tf
from harness.data import pipelines
from harness.distill import models
from harness.distill.distiller import Distiller
n = 10000
images = np.random.default_rng(0).integers(0, 255, (n, 28, 28, 1)).astype("uint8")
labels = np.random.default_rng(1).integers(0, 10, n)
logits = np.random.default_rng(2).normal(0, 4, (n, 10)).astype("float32")
examples = tf.data.Dataset.from_tensor_slices((images, {"labels": labels, "teacher_logits": logits}))
T = (tf.constant(images), {"labels": tf.constant(labels), "teacher_logits": tf.constant(logits)})

def gathered(seed, B=128):
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(B)
    ds = ds.map(lambda i: tf.nest.map_structure(lambda t: tf.gather(t, i), T))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return pipelines.prefetched(ds)

def old(seed):
    keras.utils.set_random_seed(seed); return pipelines.batches(examples, 128, shuffle_seed=seed)
def new(seed):
    keras.utils.set_random_seed(seed); return gathered(seed)
# same batches over two epochs of one iterator (Keras' fit iterates like this) and a fresh one
for seed in (0, 3):
    a, b = old(seed), new(seed)
    for ep in range(2):
        for (xa, ya), (xb, yb) in zip(a, b):
            assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya["labels"].numpy(), yb["labels"].numpy()) \
                and np.array_equal(ya["teacher_logits"].numpy(), yb["teacher_logits"].numpy())
    ra, rb = a.repeat(2), b.repeat(2)
    assert all(np.array_equal(p[0].numpy(), q[0].numpy()) for p, q in zip(ra, rb))
print("same batches", flush=True)
for name, mk in (("old", old), ("new", new), ("old", old), ("new", new)):
    t0 = time.perf_counter(); k = 0
    for x, y in mk(1):
        k += 1
    print(f"iterate {name}: {time.perf_counter()-t0:.3f} s for {k} batches", flush=True)
for w in (8, 12):
    for name, mk in (("old", old), ("new", new), ("old", old), ("new", new)):
        keras.utils.set_random_seed(0)
        m = models.cnn((28, 28, 1), 10, [w, 2 * w, 4 * w], head=32, pooling="gap")
        d = Distiller(m, temperature=4.0, alpha=0.1)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
        ds = mk(1); d.fit(ds, epochs=1, verbose=0)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); d.fit(ds, epochs=1, verbose=0); ts.append(time.perf_counter() - t0)
        print(f"w={w} {name}: {sorted(ts)[1]:.3f} s / 10k", flush=True)
