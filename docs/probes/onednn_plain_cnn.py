"""Plain CNN students (w, 2w, 4w; gap; head 32) distilled from random cached logits, 10,000 images,
batch 128 (or the first argument), XLA off: seconds per epoch (best of 3), with TensorFlow's oneDNN
kernels on or off. From the checkout, about 1 minute each:
`for o in 1 0; do TF_ENABLE_ONEDNN_OPTS=$o PYTHONPATH=. .venv/bin/python docs/probes/onednn_plain_cnn.py; done`"""
import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import numpy as np, keras, tensorflow as tf
from harness.distill import models
from harness.distill.distiller import Distiller
n = 10000
x = np.random.default_rng(0).integers(0, 255, (n, 28, 28, 1)).astype("float32")
y = np.random.default_rng(1).integers(0, 10, n)
lg = np.random.default_rng(2).normal(0, 4, (n, 10)).astype("float32")
bs = int(sys.argv[1]) if len(sys.argv) > 1 else 128
ds = tf.data.Dataset.from_tensor_slices((x, {"labels": y, "teacher_logits": lg})).batch(bs).cache()
for w in (6, 8, 12, 16):
    keras.utils.set_random_seed(0)
    m = models.cnn((28, 28, 1), 10, [w, 2 * w, 4 * w], head=32, pooling="gap")
    d = Distiller(m, temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
    d.fit(ds, epochs=1, verbose=0)
    ts = []
    for _ in range(3):
        t0 = time.perf_counter(); d.fit(ds, epochs=1, verbose=0); ts.append(time.perf_counter() - t0)
    f = 3 * models.flops_per_example(m)
    print(f"onednn={os.environ.get('TF_ENABLE_ONEDNN_OPTS')} bs={bs} w={w}: {min(ts):.2f} s, {f*n/min(ts)/1e9:.1f} GFLOP/s", flush=True)
