"""Keras' BatchNormalization against the harness's fused training call (harness/distill/batch_norm.py),
in the students that have batch norm: the separable family (width 16, depth 3, 4,698 params) and a
3-block CNN (16/32/64 filters). Each distilled from random cached logits over 10,000 images at batch
128, XLA off; seconds per epoch, Keras' and fused alternated, medians of 5.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/fused_batch_norm.py` (about 3 minutes)."""
import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.distill import families, models  # noqa: E402
from harness.distill.distiller import Distiller  # noqa: E402

n = 10_000
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (n, 28, 28, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, {"labels": rng.integers(0, 10, n),
                                             "teacher_logits": rng.normal(0, 4, (n, 10)).astype("float32")}))
ds = ds.batch(128).cache()
builds = {"separable w16 d3": lambda: families.separable((28, 28, 1), 10, 16, 3, batch_norm=True),
          "cnn 16/32/64": lambda: models.cnn((28, 28, 1), 10, [16, 32, 64], head=32, batch_norm=True, pooling="gap")}


def distiller(model):
    d = Distiller(model, temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
    d.fit(ds, epochs=1, verbose=0)  # warm-up: tracing
    return d


for name, build in builds.items():
    keras.utils.set_random_seed(0)
    fused = build()  # the harness's builders give their batch norms the fused call
    plain = keras.Model.from_config(fused.get_config())  # the same layers, Keras' own call
    plain.set_weights(fused.get_weights())
    runs = {"keras": distiller(plain), "fused": distiller(fused)}
    times = {k: [] for k in runs}
    for _ in range(5):
        for k, d in runs.items():
            t0 = time.perf_counter()
            d.fit(ds, epochs=1, verbose=0)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}: Keras {med['keras']:.2f} s, fused {med['fused']:.2f} s per epoch of 10,000; "
          f"speed-up {med['keras'] / med['fused']:.2f}x", flush=True)
