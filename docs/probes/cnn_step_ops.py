"""Where a plain CNN student's training epoch goes, op by op: the bench's `cnn` family (`bench/cnn.py`,
w, 2w, 4w filters, gap head) distilled from cached logits at batch 128 over 10,000 images held in
memory, one epoch traced with TensorFlow's profiler and its trace (the .xplane.pb) summed by op.
From a checkout: `PYTHONPATH=. .venv/bin/python docs/probes/cnn_step_ops.py 8` (about a minute; the
argument is w). Durations are summed over the threads that ran them, so they may add up to more
than the epoch."""
import collections
import glob
import re
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from harness.bench import cnn

w = int(sys.argv[1]) if len(sys.argv) > 1 else 8
n = 10_000
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (n, 28, 28, 1)).astype(np.float32)
targets = {"labels": rng.integers(0, 10, n), "teacher_logits": rng.normal(size=(n, 10)).astype(np.float32)}
ds = tf.data.Dataset.from_tensor_slices((x, targets)).batch(128).prefetch(2)
model = cnn._distiller(cnn.student("cnn", w, 0, (28, 28, 1), 10), False)
for i in range(3):
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    print(f"epoch {i}: {time.perf_counter() - t0:.3f} s" + (" (tracing)" if i == 0 else ""))
trace = tempfile.mkdtemp()
tf.profiler.experimental.start(trace)
model.fit(ds, epochs=1, verbose=0, shuffle=False)
tf.profiler.experimental.stop()
space = xplane_pb2.XSpace()
with open(glob.glob(f"{trace}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
    space.ParseFromString(f.read())
seconds, count = collections.Counter(), collections.Counter()
for plane in space.planes:
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):  # the graph's own ops (not Python, not tf.data's threads)
            continue
        for e in line.events:
            name = plane.event_metadata[e.metadata_id].name
            if "::" in name:  # the executor's own envelopes (ExecutorState::Process), which hold the ops
                continue
            name = re.sub(r"^.*StatefulPartitionedCall/", "", name)  # the train step's op, by layer
            seconds[name] += e.duration_ps / 1e12
            count[name] += 1
total = sum(seconds.values())
print(f"ops on TensorFlow's compute threads: {total:.3f} s in all")
for name, s in seconds.most_common(20):
    print(f"{s:7.3f} s {100 * s / total:5.1f}% {count[name]:5d}  {name[:100]}")
kinds = {"convolutions (forward, and both gradients)": "Conv2D", "max-pooling and its gradient": "MaxPool",
         "ReLU gradients": "ReluGrad"}
named = 0.0
for label, part in kinds.items():
    s = sum(v for k, v in seconds.items() if part in k)
    named += s
    print(f"{label}: {s:.3f} s, {100 * s / total:.0f}%")
print(f"everything else (loss, Adam's updates, copies): {100 * (1 - named / total):.0f}%")
