"""Lone CNN epochs against CPU steal: N processes one after the other, each training the bench's `cnn`
student (`bench/cnn.py`, cached logits, batch 128, XLA off, the bench's seeded pipeline) for a warm-up
epoch and 5 timed epochs of 10,000 images. Each line: the median epoch, the cores the process kept
busy, and the share of the machine's CPU time stolen by other guests while it ran (`training/contention.py`).
From a checkout (about 30 s a process): `PYTHONPATH=. .venv/bin/python docs/probes/lone_epochs_steal.py 12 6`
(w, processes)."""
import subprocess
import sys

CHILD = """
import sys, time
import numpy as np, tensorflow as tf
from harness.bench import cnn
from harness.bench.population import streams
rng = np.random.default_rng(0); n = 10_000
x = rng.uniform(0, 255, (n, 28, 28, 1)).astype(np.float32)
t = {"labels": rng.integers(0, 10, n), "teacher_logits": rng.normal(size=(n, 10)).astype(np.float32)}
ds = streams(tf.data.Dataset.from_tensor_slices((x, t)), [0])[0]
m = cnn._distiller(cnn.student("cnn", int(sys.argv[1]), 0, (28, 28, 1), 10), False)
m.fit(ds, epochs=1, verbose=0, shuffle=False)
walls, cores = [], []
for _ in range(5):
    w0, c0 = time.perf_counter(), time.process_time()
    m.fit(ds, epochs=1, verbose=0, shuffle=False)
    walls.append(time.perf_counter() - w0); cores.append((time.process_time() - c0) / walls[-1])
print(f"{np.median(walls):.3f} s an epoch (min {min(walls):.3f}, max {max(walls):.3f}), "
      f"{np.median(cores):.2f} cores busy")
"""

if __name__ == "__main__":
    from harness.training import contention

    w, n = (int(v) for v in (sys.argv[1:3] if len(sys.argv) > 2 else (12, 6)))
    for i in range(n):
        with contention.measured(f := {}):
            out = subprocess.run([sys.executable, "-c", CHILD, str(w)], capture_output=True, text=True, check=True)
        print(f"w={w} process {i}: {out.stdout.strip()}; {f['steal_pct']:.1f}% stolen, "
              f"{f['others_pct']:.1f}% other processes", flush=True)
