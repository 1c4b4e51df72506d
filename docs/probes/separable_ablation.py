"""Where the bench's MobileNet-style separable student (harness/bench/cnn.py, alpha 0.75, 22,906
params) spends its epoch: as benched (batch norms fused), with Keras' own batch norm, without batch
norm, without the depthwise convolutions, and with each stride-2 depthwise convolution as stride 1
then subsampled. Random cached logits, 10,000 images, batch 128, XLA off, alternated, medians of 3.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/separable_ablation.py` (about 2 minutes)."""
import os, time, sys, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
from harness.bench import cnn
from harness.distill.distiller import Distiller
from harness.distill.batch_norm import fused
n = 10000
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (n, 28, 28, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, {"labels": rng.integers(0, 10, n), "teacher_logits": rng.normal(0, 4, (n, 10)).astype("float32")})).batch(128).cache()
def build(alpha, bn=True, dw="native", fuse=True):
    norm = (lambda layer: fused(layer)) if fuse else (lambda layer: layer)
    def ch(c): return max(4, int(round(c * alpha / 4)) * 4)
    i = keras.Input((28, 28, 1)); h = keras.layers.Rescaling(1 / 255.)(i)
    h = keras.layers.Conv2D(ch(16), 3, padding="same", use_bias=False)(h)
    if bn: h = norm(keras.layers.BatchNormalization())(h)
    h = keras.layers.ReLU()(h)
    for c, s in cnn.BLOCKS:
        if dw == "native":
            h = keras.layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(h)
        elif dw == "stride1+pool":
            h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
            if s == 2: h = keras.layers.Lambda(lambda t: t[:, ::2, ::2, :])(h)
        elif dw == "none":
            if s == 2: h = keras.layers.AveragePooling2D(2)(h)
        if bn: h = norm(keras.layers.BatchNormalization())(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(ch(c), 1, use_bias=False)(h)
        if bn: h = norm(keras.layers.BatchNormalization())(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(i, keras.layers.Dense(10)(h))
vs = {"as benched": dict(), "Keras' batch norm": dict(fuse=False), "no batch norm": dict(bn=False), "no depthwise": dict(dw="none"),
      "depthwise stride 1 then subsample": dict(dw="stride1+pool")}
ds_ = {}
for name, kw in vs.items():
    keras.utils.set_random_seed(0)
    d = Distiller(build(0.75, **kw), temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
    d.fit(ds, epochs=1, verbose=0); ds_[name] = d
t = {k: [] for k in vs}
for _ in range(3):
    for k, d in ds_.items():
        t0 = time.perf_counter(); d.fit(ds, epochs=1, verbose=0); t[k].append(time.perf_counter() - t0)
for k, v in t.items():
    print(f"{k}: {statistics.median(v):.2f} s / 10k", flush=True)
