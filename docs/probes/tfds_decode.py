"""Four ways to read Fashion-MNIST's first 59,985 training records into arrays with TFDS (what a study
with `dataset.limit` reads: the validation slice spreads over the whole split), each timed twice,
the best kept: the harness's `batch_size=-1` read, `SkipDecoding` with a parallel `decode_png`,
`ReadConfig(num_parallel_calls_for_decode=AUTOTUNE)`, and batched iteration.
From a checkout: `.venv/bin/python docs/probes/tfds_decode.py` (about a minute)."""
import time

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

b = tfds.builder("fashion_mnist")
def t(f, n=2):
    r=[]
    for _ in range(n):
        t0=time.perf_counter(); out=f(); r.append(time.perf_counter()-t0)
    return min(r), out
def cur():
    x,y=tfds.as_numpy(b.as_dataset(split="train[:59985]", as_supervised=True, batch_size=-1)); return x.shape
def skip():
    ds=b.as_dataset(split="train[:59985]", as_supervised=True, decoders={"image": tfds.decode.SkipDecoding()})
    ds=ds.map(lambda x,y:(tf.io.decode_png(x,channels=1),y), num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
    xs,ys=zip(*tfds.as_numpy(ds)); return np.concatenate(xs).shape
def rc():
    rc = tfds.ReadConfig(num_parallel_calls_for_decode=tf.data.AUTOTUNE, interleave_cycle_length=1)
    x,y=tfds.as_numpy(b.as_dataset(split="train[:59985]", as_supervised=True, batch_size=-1, read_config=rc))
    return x.shape
def unb():
    ds=b.as_dataset(split="train[:59985]", as_supervised=True).batch(8192)
    xs,ys=zip(*tfds.as_numpy(ds)); return np.concatenate(xs).shape
for f in (cur, skip, rc, unb, cur):
    print(f.__name__, t(f))
