"""The bench's MobileNet-style separable student (harness/bench/cnn.py) at alpha 0.75 and 1.0, its batch
norms fused (as benched) against Keras' own call; random cached logits, 10,000 images, batch 128,
XLA off, alternated, medians of 3.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/separable_batch_norm.py` (about 2 minutes)."""
import os, time, sys, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
from harness.bench import cnn
from harness.distill.distiller import Distiller
n = 10000
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (n, 28, 28, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, {"labels": rng.integers(0, 10, n), "teacher_logits": rng.normal(0, 4, (n, 10)).astype("float32")})).batch(128).cache()
runs = {}
for alpha in (0.75, 1.0):
    keras.utils.set_random_seed(0)
    m = cnn.separable_cnn((28, 28, 1), 10, alpha)
    p = keras.Model.from_config(m.get_config()); p.set_weights(m.get_weights())
    for name, mm in (("fused", m), ("keras", p)):
        d = Distiller(mm, temperature=4.0, alpha=0.1)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
        d.fit(ds, epochs=1, verbose=0); runs[f"alpha {alpha} {name}"] = d
t = {k: [] for k in runs}
for _ in range(3):
    for k, d in runs.items():
        t0 = time.perf_counter(); d.fit(ds, epochs=1, verbose=0); t[k].append(time.perf_counter() - t0)
for k, v in t.items():
    print(f"{k}: {statistics.median(v):.2f} s / 10k", flush=True)
