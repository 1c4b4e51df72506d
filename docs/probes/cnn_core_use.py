"""How much of the 2 cores a lone CNN student's epoch already keeps busy, and how many CPU-seconds
each member costs, alone and in a K = 10 population (the bench's `cnn` family, `bench/cnn.py`,
cached logits at batch 128, XLA off, the bench's seeded pipelines). A population can only beat K
lone runs by using cores the lone run leaves idle, or by spending fewer CPU-seconds per member.
From a checkout (about 4 minutes): `PYTHONPATH=. .venv/bin/python docs/probes/cnn_core_use.py 8 12`.
CPU-seconds are the process's (`time.process_time`, every thread), so a kernel thread that spins
while it waits counts as busy."""
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from harness.bench import cnn
from harness.bench.population import stacked, streams
from harness.distill.population import Population

K, N_LONE, N_POP, REPEATS = 10, 10_000, 2_000, 3
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (N_LONE, 28, 28, 1)).astype(np.float32)
targets = {"labels": rng.integers(0, 10, N_LONE), "teacher_logits": rng.normal(size=(N_LONE, 10)).astype(np.float32)}


def timed(fit, repeats=REPEATS):
    """Median wall and CPU seconds of `fit()` over `repeats`, after one call that traces."""
    fit()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fit()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus))


print(f"{os.cpu_count()} CPUs; K = {K}; lone over {N_LONE:,} images, population over {N_POP:,} a member")
for w in map(int, sys.argv[1:] or ["8", "12"]):
    lone_ds = streams(tf.data.Dataset.from_tensor_slices((x, targets)), [0])[0]  # the bench's lone pipeline
    lone = cnn._distiller(cnn.student("cnn", w, 0, (28, 28, 1), 10), False)
    wall, cpu = timed(lambda: lone.fit(lone_ds, epochs=1, verbose=0, shuffle=False))
    per_lone = cpu / N_LONE * 1e6
    print(f"w={w} lone: {wall:.3f} s wall, {cpu:.3f} CPU-s an epoch: {cpu / wall:.2f} cores busy, "
          f"{per_lone:.1f} CPU-us an image")
    keras.backend.clear_session()
    seeds = list(range(1, K + 1))
    pop = Population([cnn.student("cnn", w, s, (28, 28, 1), 10) for s in seeds], [4.0] * K, [0.1] * K)
    pop.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=cnn.STEPS_PER_EXECUTION)
    together = stacked(tf.data.Dataset.from_tensor_slices((x[:N_POP], {k: v[:N_POP] for k, v in targets.items()})),
                          seeds)
    pwall, pcpu = timed(lambda: pop.fit(together, epochs=1, verbose=0, shuffle=False))
    per_member = pcpu / (K * N_POP) * 1e6
    speedup = (wall / N_LONE) * K * N_POP / pwall
    print(f"w={w} K={K} together: {pwall:.3f} s wall, {pcpu:.3f} CPU-s an epoch: {pcpu / pwall:.2f} cores busy, "
          f"{per_member:.1f} CPU-us a member's image ({per_member / per_lone:.2f}x the lone's); "
          f"speed-up {speedup:.2f}x")
    keras.backend.clear_session()
