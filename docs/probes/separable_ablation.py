"""Where the bench's MobileNet-style separable student (harness/bench/cnn.py) spends its epoch. At
alpha 0.75 (22,906 params, 12-96 channels): as benched (batch norms fused), with Keras' own batch
norm, without batch norm, without the depthwise convolutions, and with each stride-2 depthwise
convolution as stride 1 then subsampled; at alpha 1.0 (16-128 channels): fused against Keras' batch
norm. Random cached logits, 10,000 images, batch 128, XLA off, alternated, medians of 3.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/separable_ablation.py` (about 4 minutes)."""
import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from harness.bench import cnn  # noqa: E402
from harness.distill.batch_norm import fused  # noqa: E402
from harness.distill.distiller import Distiller  # noqa: E402

n = 10_000
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (n, 28, 28, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, {"labels": rng.integers(0, 10, n),
                                             "teacher_logits": rng.normal(0, 4, (n, 10)).astype("float32")}))
ds = ds.batch(128).cache()


def build(alpha, bn=True, dw="native", fuse=True):
    """`cnn.separable_cnn`'s layers, with the parts the variants take out or change."""
    def norm(h):
        layer = keras.layers.BatchNormalization()
        return (fused(layer) if fuse else layer)(h) if bn else h

    def ch(c):
        return max(4, int(round(c * alpha / 4)) * 4)

    i = keras.Input((28, 28, 1))
    h = keras.layers.Rescaling(1 / 255.0)(i)
    h = keras.layers.ReLU()(norm(keras.layers.Conv2D(ch(16), 3, padding="same", use_bias=False)(h)))
    for c, s in cnn.BLOCKS:
        if dw == "native":
            h = keras.layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(h)
        elif dw == "stride 1, subsampled":
            h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(h)
            if s == 2:
                h = keras.layers.Lambda(lambda t: t[:, ::2, ::2, :])(h)
        elif s == 2:  # no depthwise convolution: the stride as an average pool
            h = keras.layers.AveragePooling2D(2)(h)
        h = keras.layers.ReLU()(norm(h))
        h = keras.layers.ReLU()(norm(keras.layers.Conv2D(ch(c), 1, use_bias=False)(h)))
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(i, keras.layers.Dense(10)(h))


variants = {"0.75 as benched": dict(alpha=0.75), "0.75 Keras' batch norm": dict(alpha=0.75, fuse=False),
            "0.75 no batch norm": dict(alpha=0.75, bn=False), "0.75 no depthwise": dict(alpha=0.75, dw="none"),
            "0.75 depthwise stride 1, subsampled": dict(alpha=0.75, dw="stride 1, subsampled"),
            "1.0 as benched": dict(alpha=1.0), "1.0 Keras' batch norm": dict(alpha=1.0, fuse=False)}
runs = {}
for name, kw in variants.items():
    keras.utils.set_random_seed(0)
    d = Distiller(build(**kw), temperature=4.0, alpha=0.1)
    d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
    d.fit(ds, epochs=1, verbose=0)  # warm-up: tracing
    runs[name] = d
times = {k: [] for k in runs}
for _ in range(3):
    for k, d in runs.items():
        t0 = time.perf_counter()
        d.fit(ds, epochs=1, verbose=0)
        times[k].append(time.perf_counter() - t0)
for k, v in times.items():
    print(f"alpha {k}: {statistics.median(v):.2f} s per epoch of 10,000", flush=True)
