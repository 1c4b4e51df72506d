"""Seconds per epoch of candidate compression students (54,000 random 28x28x1 images, batch 128,
XLA off), built by the harness's own builder. Run from the checkout:
`.venv/bin/python docs/probes/student_epochs.py` (about 3 minutes on 2 idle cores)."""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, keras, tensorflow as tf
from harness.config.student import StudentConfig
from harness.distill.models import build_student
x = np.random.rand(54000,28,28,1).astype("float32"); y = np.random.randint(0,10,54000)
cands = [
 ("cnn", dict(depth=2, head=32), 8),
 ("cnn", dict(depth=3, head=32, pooling="gap"), 12),
 ("cnn", dict(depth=3, head=32, pooling="gap"), 16),
 ("cnn", dict(depth=3, head=32, pooling="gap", batch_norm=True), 16),
 ("cnn", dict(depth=3, head=32, pooling="gap", convs_per_block=2), 12),
 ("cnn", dict(depth=2, head=32, pooling="gap", convs_per_block=2, batch_norm=True), 16),
 ("separable", dict(depth=3, batch_norm=True), 16),
 ("separable", dict(depth=3, batch_norm=True), 24),
]
for fam, kw, w in cands:
    cfg = StudentConfig(family=fam, **kw)
    m = build_student(cfg, w, (28,28,1), 10, seed=0)
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x,y)).batch(128).prefetch(2)
    m.fit(ds.take(20), epochs=1, verbose=0)
    t=time.perf_counter(); m.fit(ds, epochs=1, verbose=0); dt=time.perf_counter()-t
    print(fam, kw, w, m.count_params(), f"{dt:.1f}s/epoch", flush=True)
