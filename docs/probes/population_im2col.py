"""K = 10 plain CNN students (w, 2w, 4w; gap; head 32) as one Population: one convolution per member
(the harness's) and im2col (nine shifted slices concatenated, one batched matmul for all K), each
against 10 lone runs; random cached logits, 2,000 images each, batch 128, XLA off, medians of 3.
From the checkout: `PYTHONPATH=. .venv/bin/python docs/probes/population_im2col.py` (about 4 minutes)."""
import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras, tensorflow as tf
from harness.distill import models
from harness.distill import population as P
from harness.distill.distiller import Distiller

class Im2col(P.Population):
    def call(self, x, training=False):
        k = self.k
        for step, weights in zip(self._steps, self._stacked):
            if step.kind == "conv":
                s = tf.shape(x); h, w, c = x.shape[2], x.shape[3], x.shape[4]
                kh, kw, _, o = weights[0].shape[1:]
                xp = tf.pad(x, [[0, 0], [0, 0], [kh // 2] * 2, [kw // 2] * 2, [0, 0]])
                patches = tf.concat([xp[:, :, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=-1)
                y = tf.matmul(tf.reshape(patches, [k, -1, kh * kw * c]), tf.reshape(weights[0], [k, kh * kw * c, o]))
                x = tf.reshape(y, [k, s[1], h, w, o])
                if step.use_bias:
                    x = x + weights[1][:, None, None, None, :]
                x = step.activation(x)
            else:
                x = self._one(step, weights, x)
        return x
    def _one(self, step, weights, x):
        steps, stacked = self._steps, self._stacked
        self._steps, self._stacked = [step], [weights]
        try:
            return P.Population.call(self, x)
        finally:
            self._steps, self._stacked = steps, stacked

K, n, B = 10, 2000, 128
rng = np.random.default_rng(0)
xs = rng.integers(0, 255, (K, n, 28, 28, 1)).astype("float32"); ys = rng.integers(0, 10, (K, n))
ls = rng.normal(0, 4, (K, n, 10)).astype("float32")
def stacked_ds():
    return tf.data.Dataset.from_tensor_slices((np.moveaxis(xs, 0, 1), {"labels": ys.T, "teacher_logits": np.moveaxis(ls, 0, 1)})).batch(B).map(
        lambda x, y: (tf.transpose(x, [1, 0, 2, 3, 4]), {"labels": tf.transpose(y["labels"]), "teacher_logits": tf.transpose(y["teacher_logits"], [1, 0, 2])})).cache()
for w in (6, 8, 12):
    studs = []
    for s in range(K):
        keras.utils.set_random_seed(s); studs.append(models.cnn((28, 28, 1), 10, [w, 2 * w, 4 * w], head=32, pooling="gap"))
    res = {}
    for name, cls in (("per-member", P.Population), ("im2col", Im2col)):
        pop = cls(studs, [4.0] * K, [0.1] * K)
        pop.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
        ds = stacked_ds(); pop.fit(ds, epochs=1, verbose=0)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); pop.fit(ds, epochs=1, verbose=0); ts.append(time.perf_counter() - t0)
        res[name] = sorted(ts)[1]
        x0 = xs[:, :64]
        res[name + " out"] = pop(x0).numpy()
    lone = []
    for s in range(K):
        d = Distiller(models.cnn((28, 28, 1), 10, [w, 2 * w, 4 * w], head=32, pooling="gap"), temperature=4.0, alpha=0.1)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=32)
        ds = tf.data.Dataset.from_tensor_slices((xs[s], {"labels": ys[s], "teacher_logits": ls[s]})).batch(B).cache()
        d.fit(ds, epochs=1, verbose=0); lone.append((d, ds))
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        for d, ds in lone:
            d.fit(ds, epochs=1, verbose=0)
        ts.append(time.perf_counter() - t0)
    lt = sorted(ts)[1]
    print(f"w={w}: lone x10 {lt:.2f} s; per-member {res['per-member']:.2f} s ({lt/res['per-member']:.2f}x); "
          f"im2col {res['im2col']:.2f} s ({lt/res['im2col']:.2f}x)", flush=True)
