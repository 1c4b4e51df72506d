"""The fresh-process side of every export check: `python -m harness.deploy.verify SPEC.json`.

A new Python, on one thread, loads each exported file with what a deployment
would use (TensorFlow's SavedModel loader and Keras' TFSMLayer; the TFLite
interpreter) and compares it with the Keras student's logits, which the parent
wrote beside the spec. It also scores the file on the test images and times a
single image. It prints one JSON object, path -> figures or {"error": why}.
Nothing here imports the rest of the harness but `latency` and `tflite`.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SAVED_MODEL_TOLERANCE = 1e-5
TFLITE_TOLERANCE = 1e-3  # float TFLite vs Keras: same math, other kernels (XNNPACK)
INT8_MAX_DROP = 1.0  # accuracy points on validation the int8 file may lose against the float student


class CheckFailed(Exception):
    pass


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def int8_refusal(float_accuracy: float, int8_accuracy: float, agreement: float, max_drop: float, n: int) -> str | None:
    """Why an int8 file is refused, or None: it is placed when its validation accuracy (a fraction)
    is at most `max_drop` accuracy points below the float student's on the same `n` images.
    Top-1 agreement is reported beside it, not gated on: close top-two logits can flip without
    costing accuracy."""
    drop = 100 * (float_accuracy - int8_accuracy)
    if drop <= max_drop + 1e-9:
        return None
    return (f"validation accuracy {int8_accuracy:.4f} against the float student's {float_accuracy:.4f} on {n} "
            f"validation images: a drop of {drop:.2f} points > {max_drop:g} (exports_int8_max_drop); "
            f"top-1 agreement {agreement:.4f}")


def check_saved_model(path: str, d: dict) -> dict:
    import keras
    import tensorflow as tf

    from harness.deploy import latency

    x, want = d["x"].astype(np.float32), d["want"]
    loaded = tf.saved_model.load(path)
    specs = {}
    for name in ("serving_default", "serve_uint8"):
        _expect(name in loaded.signatures, f"signature {name!r} is missing")
        specs[name] = next(iter(loaded.signatures[name].structured_input_signature[1].values()))
    for name, dtype in (("serving_default", tf.float32), ("serve_uint8", tf.uint8)):
        _expect(specs[name].dtype == dtype and specs[name].shape.as_list() == [None, *x.shape[1:]],
                f"signature {name!r} takes {specs[name]}, not [None, {', '.join(map(str, x.shape[1:]))}] {dtype.name}")
    sig = loaded.signatures["serving_default"](tf.constant(x))
    u8 = loaded.signatures["serve_uint8"](tf.constant(x.astype(np.uint8)))
    layer = keras.layers.TFSMLayer(path, call_endpoint="serve")(x)
    got = [loaded.serve(tf.constant(x)).numpy(), next(iter(sig.values())).numpy(),
           loaded.serve_uint8(tf.constant(x.astype(np.uint8))).numpy(), next(iter(u8.values())).numpy(),
           np.asarray(next(iter(layer.values())) if isinstance(layer, dict) else layer)]
    diff = max(float(np.abs(g - want).max()) if g.shape == want.shape else np.inf for g in got)
    _expect(diff <= SAVED_MODEL_TOLERANCE, f"differs from the student by {diff:g} > {SAVED_MODEL_TOLERANCE:g}")
    # batches of 500, none empty: TensorFlow's oneDNN convolution fails on a batch of 0 images ("input
    # depth must be evenly divisible by filter depth"), which array_split gave a test split under 20 images
    test_x = d["test_x"]
    test = np.concatenate([loaded.serve_uint8(tf.constant(test_x[i:i + 500])).numpy()
                           for i in range(0, len(test_x), 500)])
    one = tf.constant(d["test_x"][:1])
    return {"max_diff": diff, "test_accuracy": float((test.argmax(1) == d["test_y"]).mean()),
            **latency.measure(lambda: loaded.serve_uint8(one), runs=d["runs"])}


def check_tflite(path: str, d: dict, kind: str) -> dict:
    from harness.deploy import latency, tflite

    x, want = d["x"], d["want"]
    with open(path, "rb") as f:  # from bytes, the flatbuffer is verified (from a path, a corrupt file can crash)
        interp = tflite.interpreter(model_content=f.read())
    inp, out = interp.get_input_details(), interp.get_output_details()
    dtype = np.uint8 if kind == "tflite-int8" else np.float32
    _expect(len(inp) == 1 and len(out) == 1, f"{len(inp)} inputs and {len(out)} outputs, not 1 and 1")
    _expect(inp[0]["dtype"] == dtype and list(inp[0]["shape_signature"][1:]) == list(x.shape[1:]),
            f"input is {[int(v) for v in inp[0]['shape_signature']]} {np.dtype(inp[0]['dtype']).name}, "
            f"not [-1, {', '.join(map(str, x.shape[1:]))}] {np.dtype(dtype).name}")
    _expect(out[0]["dtype"] == np.float32 and out[0]["shape_signature"][-1] == want.shape[-1],
            f"output is {[int(v) for v in out[0]['shape_signature']]} {np.dtype(out[0]['dtype']).name}, "
            f"not [-1, {want.shape[-1]}] float32 logits")
    got = tflite.predict(interp, x)
    test = tflite.predict(interp, d["test_x"])
    r = {"max_diff": float(np.abs(got - want).max()), "agreement": float((got.argmax(1) == want.argmax(1)).mean()),
         "test_accuracy": float((test.argmax(1) == d["test_y"]).mean())}
    interp.resize_tensor_input(inp[0]["index"], [1, *x.shape[1:]])
    interp.allocate_tensors()
    interp.set_tensor(inp[0]["index"], d["test_x"][:1].astype(dtype))
    r.update(latency.measure(interp.invoke, runs=d["runs"]))
    seen = f"(it scored test acc {r['test_accuracy']:.4f}, p50 {r['p50_ms']:.4f} ms, p99 {r['p99_ms']:.4f} ms)"
    if kind == "tflite-int8":
        r["input_quantization"] = [float(v) for v in inp[0]["quantization"]]  # (scale, zero point)
        if "val_y" in d:
            r["float_val_accuracy"] = float((want.argmax(1) == d["val_y"]).mean())
            r["val_accuracy"] = float((got.argmax(1) == d["val_y"]).mean())
            r["val_accuracy_drop"] = r["float_val_accuracy"] - r["val_accuracy"]
            why = int8_refusal(r["float_val_accuracy"], r["val_accuracy"], r["agreement"],
                               d.get("int8_max_drop", INT8_MAX_DROP), len(x))
            _expect(why is None, f"{why} {seen}")
    else:
        _expect(r["max_diff"] <= TFLITE_TOLERANCE,
                f"differs from the student by {r['max_diff']:g} > {TFLITE_TOLERANCE:g} {seen}")
    return r


def check(kind: str, path: str, d: dict) -> dict:
    """One export's figures (`check_saved_model` or `check_tflite` by its format); raises if refused."""
    return check_saved_model(path, d) if kind == "savedmodel" else check_tflite(path, d, kind)


def main(spec_path: str) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    spec = json.loads(open(spec_path).read())
    d = {**np.load(spec["data"]), "runs": spec["latency_runs"], "int8_max_drop": spec.get("int8_max_drop", INT8_MAX_DROP)}
    results = {}
    for kind, path in spec["exports"]:
        try:
            results[path] = check(kind, path, d)
        except Exception as e:  # noqa: BLE001 - any failure to load or run is a refused export
            results[path] = {"error": f"{type(e).__name__}: {e}"[:400]}
    print(json.dumps(results))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(sys.argv[1])
