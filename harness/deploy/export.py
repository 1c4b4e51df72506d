"""The student alone, exported as a SavedModel, a float TFLite or an int8 TFLite file, each checked
in a fresh process before it is put in place.

The SavedModel has two signatures: `serving_default` (endpoint `serve`) takes
float32 images `[batch, H, W, C]`, values 0-255, as every model here; the signature and
endpoint `serve_uint8` takes the uint8 images the dataset and most image
sources give, and casts them inside. Both return logits. The TFLite files are
described in `tflite`.

Exports are made from a float32 copy of the student (`tflite.float32_copy`): a
bfloat16 student's variables are float32 already, and its compute dtype would
otherwise reach the files. A format that cannot be written is refused alone,
with a warning, and the others are still checked and placed.

Every export is written beside its destination; one fresh Python
(`harness.deploy.verify`) loads them all, compares each with the student, scores it on
the test images and times one image; only an export that passed is renamed
into place, so a half-written, corrupt or wrong-signature file never sits at
the path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import UserError
from harness.deploy import tflite

log = logging.getLogger(__name__)
FORMATS = ("savedmodel", "tflite", "tflite-int8")
ROOT = Path(__file__).resolve().parents[2]


class ExportError(UserError):
    """An export refused by its check: the command line prints it as one line (exit code 2)."""


@dataclass
class CheckData:
    """What the checks compare and score on: validation images (never test) for the comparison,
    the test split for the accuracy, transfer images for the int8 calibration."""
    validation: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    calibration: np.ndarray
    latency_runs: int = 1000  # timed single-image calls per export, after 50 untimed ones
    class_names: list[str] | None = None  # shipped with the SavedModel (assets.extra/class_names.json)
    validation_labels: np.ndarray | None = None  # of `validation`: the int8 gate's accuracy drop
    int8_max_drop: float = 1.0  # accuracy points on validation the int8 file may lose (exports_int8_max_drop)


def write_saved_model(student, path: Path, class_names: list[str] | None = None) -> None:
    """The SavedModel (see the module); with `class_names`, also `assets.extra/class_names.json` (a JSON
    list, class id -> name): the folder TensorFlow leaves to files that travel with a model unread."""
    import keras
    import tensorflow as tf

    shape = [None, *student.input_shape[1:]]
    archive = keras.export.ExportArchive()
    archive.track(student)
    archive.add_endpoint("serve", lambda x: student(x, training=False),
                         input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    archive.add_endpoint("serve_uint8", lambda x: student(tf.cast(x, tf.float32), training=False),
                         input_signature=[tf.TensorSpec(shape, tf.uint8, name="images")])
    archive.write_out(str(path), verbose=False)
    if class_names:
        (path / "assets.extra").mkdir(exist_ok=True)
        (path / "assets.extra" / "class_names.json").write_text(json.dumps(list(class_names)))


def _write(student, kind: str, path: Path, data: CheckData) -> None:
    if kind == "savedmodel":
        write_saved_model(student, path, data.class_names)
    else:
        path.write_bytes(tflite.convert(student, kind, data.calibration))


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def check_fresh(exports: list[tuple[str, Path]], want: np.ndarray, data: CheckData) -> dict[str, dict]:
    """Each export's figures from a fresh process (or {"error": ...}). A corrupt file can crash
    the interpreter itself: then each export is checked again in a process of its own."""
    try:
        return _check_process(exports, want, data)
    except ExportError:
        if len(exports) == 1:
            return {str(exports[0][1]): {"error": "the checking process crashed on it"}}
        log.warning("the export check crashed; checking each export in a process of its own")
        return {k: v for item in exports for k, v in check_fresh([item], want, data).items()}


def _check_process(exports: list[tuple[str, Path]], want: np.ndarray, data: CheckData) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        npz, spec = Path(tmp) / "check.npz", Path(tmp) / "spec.json"
        labels = {} if data.validation_labels is None else {"val_y": data.validation_labels}
        np.savez(npz, x=data.validation, want=want, test_x=data.test_images, test_y=data.test_labels, **labels)
        spec.write_text(json.dumps({"data": str(npz), "exports": [(k, str(p)) for k, p in exports],
                                    "latency_runs": data.latency_runs, "int8_max_drop": data.int8_max_drop}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-m", "harness.deploy.verify", str(spec)], capture_output=True, text=True,
                              env=env)
    if proc.returncode != 0:
        raise ExportError(f"the fresh-process check exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _place(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    _remove(old)


def export(student, outs: dict[str, Path], data: CheckData) -> dict[str, dict]:
    """Export `student` in each format of `outs` (format -> path); returns format -> figures
    (test_accuracy, size_bytes, p50_ms, p99_ms, ..., path), or {"refused": why} for an export that
    failed its check: nothing of it is left at its path (the others are still put in place)."""
    unknown = set(outs) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; allowed: {', '.join(FORMATS)}")
    student = tflite.float32_copy(student)
    tmps, figures = {}, {}
    try:
        for kind, out in outs.items():
            out = Path(out).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            _remove(tmp)
            try:
                _write(student, kind, tmp, data)
            except Exception as e:  # noqa: BLE001 - e.g. the converter's ConverterError: this format alone
                _remove(tmp)
                reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
                figures[kind] = {"refused": f"{kind} export to {out} refused: it could not be written ({reason})"}
                log.warning("%s", figures[kind]["refused"])
                continue
            tmps[kind] = tmp
        want = student.predict(data.validation.astype(np.float32), verbose=0, batch_size=500)
        results = check_fresh(list(tmps.items()), want, data) if tmps else {}
        for kind, tmp in tmps.items():
            r = results.get(str(tmp), {"error": "not checked"})
            out = Path(outs[kind]).resolve()
            if "error" in r:
                figures[kind] = {"refused": f"{kind} export to {out} ({size_bytes(tmp):,} bytes) refused: {r['error']}"}
                log.warning("%s", figures[kind]["refused"])
                continue
            figures[kind] = {**r, "size_bytes": size_bytes(tmp), "path": str(out)}
            _place(tmp, out)
            int8 = (f", validation accuracy drop {100 * r['val_accuracy_drop']:.2f} points (at most "
                    f"{data.int8_max_drop:g}), top-1 agreement {r['agreement']:.4f}") if "val_accuracy_drop" in r else ""
            log.info("exported %s to %s (%d bytes; fresh-process check: max |diff| %.2g, test acc %.4f, "
                     "p50 %.4f ms, p99 %.4f ms%s)", kind, out, figures[kind]["size_bytes"], r["max_diff"],
                     r["test_accuracy"], r["p50_ms"], r["p99_ms"], int8)
        return {kind: figures[kind] for kind in outs}
    finally:
        for tmp in tmps.values():
            _remove(tmp)
