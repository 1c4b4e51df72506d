"""The student alone as a TensorFlow SavedModel, checked by reloading it in a fresh process.

The serving signature takes images as the dataset gives them
(`[batch, 28, 28, 1]`, float32, values 0-255) and returns logits. The export
is written beside its destination and renamed into place only after a fresh
Python with nothing but TensorFlow (and Keras' TFSMLayer) gave the same
predictions, so a half-written or wrong export never sits at the path.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)
TOLERANCE = 1e-5

_CHECK = r"""
import sys, numpy as np, tensorflow as tf, keras
path, data = sys.argv[1], np.load(sys.argv[2])
x, want = data["x"], data["want"]
loaded = tf.saved_model.load(path)
got = loaded.serve(tf.constant(x)).numpy()
sig = loaded.signatures["serving_default"](tf.constant(x))
got_sig = next(iter(sig.values())).numpy()
got_layer = keras.layers.TFSMLayer(path, call_endpoint="serve")(x)
got_layer = np.asarray(got_layer if not isinstance(got_layer, dict) else next(iter(got_layer.values())))
print(max(float(np.abs(g - want).max()) for g in (got, got_sig, got_layer)))
"""


class ExportError(RuntimeError):
    pass


def reload_max_diff(path: Path, x: np.ndarray, want: np.ndarray) -> float:
    """Largest |difference| between `want` and what a fresh process predicts from the export."""
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "check.npz"
        np.savez(npz, x=x.astype(np.float32), want=want)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run([sys.executable, "-c", _CHECK, str(path), str(npz)], capture_output=True,
                              text=True, env=env)
    if proc.returncode != 0:
        raise ExportError(f"reloading {path} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def export_saved_model(student: keras.Model, out: str | Path, sample_images: np.ndarray) -> Path:
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    student.export(str(tmp), format="tf_saved_model", verbose=False)
    x = sample_images.astype(np.float32)
    want = student.predict(x, verbose=0)
    diff = reload_max_diff(tmp, x, want)
    if diff > TOLERANCE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"reloaded SavedModel differs from the student by {diff:g} > {TOLERANCE:g}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    log.info("exported the student to %s (reloaded in a fresh process: max |diff| %.2g)", out, diff)
    return out
