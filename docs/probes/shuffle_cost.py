"""Plain CNN students (w, 2w, 4w; gap; head 32) distilled from random cached logits, 10,000 images,
batch 128, XLA off: seconds per epoch (median and best of 9, alternated in one process) through
three input pipelines: a cached, batched float32 dataset; the harness's own (`pipelines.batches`,
tf.data's per-element shuffle over the whole set); the same without the shuffle. About 2 minutes:
`PYTHONPATH=. .venv/bin/python docs/probes/shuffle_cost.py`"""
import os, time, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
from harness.distill import models
from harness.distill.distiller import Distiller
from harness.data import pipelines
n = 10000
x = np.random.default_rng(0).integers(0, 255, (n, 28, 28, 1)).astype("uint8")
y = np.random.default_rng(1).integers(0, 10, n)
lg = np.random.default_rng(2).normal(0, 4, (n, 10)).astype("float32")
ex = tf.data.Dataset.from_tensor_slices((x, {"labels": y, "teacher_logits": lg}))
dss = {
 "cached": tf.data.Dataset.from_tensor_slices((x.astype("float32"), {"labels": y, "teacher_logits": lg})).batch(128).cache(),
 "harness": pipelines.batches(ex, 128, shuffle_seed=0),
 "noshuffle": pipelines.batches(ex, 128),
}
for w in (8, 12):
    ds_d = {}
    for k in dss:
        keras.utils.set_random_seed(0)
        m = models.cnn((28, 28, 1), 10, [w, 2 * w, 4 * w], head=32, pooling="gap")
        d = Distiller(m, temperature=4.0, alpha=0.1)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
        d.fit(dss[k], epochs=1, verbose=0)
        ds_d[k] = d
    ts = {k: [] for k in dss}
    for _ in range(9):
        for k in dss:
            t0 = time.perf_counter(); ds_d[k].fit(dss[k], epochs=1, verbose=0); ts[k].append(time.perf_counter() - t0)
    print(w, {k: (round(statistics.median(v), 3), round(min(v), 3)) for k, v in ts.items()}, flush=True)
