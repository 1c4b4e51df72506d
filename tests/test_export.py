"""Exports, in process on a tiny student and random images; one fresh process checks them all."""

import keras
import numpy as np
import pytest

from harness.deploy import export, tflite
from harness.distill import models


@pytest.fixture(scope="module")
def student_and_data():
    keras.utils.set_random_seed(4)  # this untrained student's int8 twin agrees on 299 of the 300 images
    student = models.mlp((28, 28, 1), 10, [16], seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (900, 28, 28, 1)).astype(np.uint8)
    data = export.CheckData(validation=x[:300], test_images=x[300:600], test_labels=rng.integers(0, 10, 300),
                            calibration=x[600:], latency_runs=100)
    return student, data


def test_the_fresh_process_passes_good_exports_and_refuses_corrupt_or_wrong_signature(student_and_data, tmp_path):
    student, data = student_and_data
    good = {kind: tmp_path / f"good-{kind}" for kind in export.FORMATS}
    for kind, path in good.items():
        export._write(student, kind, path, data)
    blob = good["tflite"].read_bytes()
    (tmp_path / "corrupt.tflite").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "flipped.tflite").write_bytes(blob[:64] + bytes(b ^ 0xFF for b in blob[64:4096]) + blob[4096:])
    other = models.mlp((14, 14, 1), 10, [8], seed=0)  # another input shape
    (tmp_path / "wrong_shape.tflite").write_bytes(tflite.convert(other, "tflite"))
    student.export(str(tmp_path / "float_only"), format="tf_saved_model", verbose=False)  # no uint8 signature
    (tmp_path / "int8_as_float.tflite").write_bytes(good["tflite-int8"].read_bytes())  # takes uint8, not float32
    (tmp_path / "float_as_int8.tflite").write_bytes(blob)
    bad = [("tflite", tmp_path / "corrupt.tflite"), ("tflite", tmp_path / "flipped.tflite"),
           ("tflite", tmp_path / "wrong_shape.tflite"), ("tflite", tmp_path / "int8_as_float.tflite"),
           ("tflite-int8", tmp_path / "float_as_int8.tflite"), ("savedmodel", tmp_path / "float_only")]
    want = student.predict(data.validation.astype(np.float32), verbose=0)
    results = export.check_fresh([*good.items(), *bad], want, data)

    test_pred = student.predict(data.test_images.astype(np.float32), verbose=0).argmax(-1)
    accuracy = float(np.mean(test_pred == data.test_labels))
    for kind, path in good.items():
        r = results[str(path)]
        assert "error" not in r, r
        # the export's own test accuracy, scored in the fresh process: the student's (int8: within
        # the 1% of its predictions allowed to differ)
        assert r["test_accuracy"] == pytest.approx(accuracy, abs=0.01 if kind == "tflite-int8" else 1e-9), kind
        assert r["p50_ms"] > 0  # timed for real
    assert results[str(good["savedmodel"])]["max_diff"] <= 1e-5  # float32 and uint8 signatures alike
    assert results[str(good["tflite"])]["max_diff"] <= 1e-3
    assert results[str(good["tflite-int8"])]["agreement"] >= 0.99
    errors = {p.name: results[str(p)].get("error", "") for _, p in bad}
    assert all(errors.values()), errors
    assert "[-1, 14, 14, 1]" in errors["wrong_shape.tflite"]
    assert "not [-1, 28, 28, 1] float32" in errors["int8_as_float.tflite"]
    assert "not [-1, 28, 28, 1] uint8" in errors["float_as_int8.tflite"]
    assert "not a valid Flatbuffer" in errors["corrupt.tflite"]
    assert "serve_uint8" in errors["float_only"]

    interp = tflite.interpreter(model_path=str(good["tflite-int8"]))
    assert interp.get_input_details()[0]["dtype"] == np.uint8
    kinds = [np.dtype(d["dtype"]).name for d in interp.get_tensor_details()]
    assert kinds.count("int8") > kinds.count("float32")  # float32: the dequantised logits only
    assert len(good["tflite-int8"].read_bytes()) < 0.4 * len(blob)  # int8 weights: about a quarter


def test_a_refused_export_leaves_nothing_at_its_path(student_and_data, tmp_path, monkeypatch):
    student, data = student_and_data

    def check(exports, want, data):  # the fresh process's verdict, without the process
        return {str(p): ({"error": "CheckFailed: wrong signature"} if kind == "tflite" else
                         {"max_diff": 0.0, "test_accuracy": 0.1, "p50_ms": 1.0, "p99_ms": 2.0}) for kind, p in exports}

    monkeypatch.setattr(export, "check_fresh", check)
    outs = {"tflite": tmp_path / "m.tflite", "tflite-int8": tmp_path / "m-int8.tflite"}
    figures = export.export(student, outs, data)
    assert "wrong signature" in figures["tflite"]["refused"] and not outs["tflite"].exists()
    assert outs["tflite-int8"].is_file() and figures["tflite-int8"]["size_bytes"] == outs["tflite-int8"].stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-int8.tflite"]  # no temporary left either


@pytest.mark.parametrize("kind", export.FORMATS)
def test_every_format_round_trips_and_refuses_another_format_s_file(kind, student_and_data, tmp_path):
    """Each format, written and checked in this process by the fresh process's own checker: it gives the
    student's test accuracy (int8 within 1 point), and a file of another format under its name is refused."""
    from harness.deploy import verify

    student, data = student_and_data
    d = {"x": data.validation, "want": student.predict(data.validation.astype(np.float32), verbose=0),
         "test_x": data.test_images, "test_y": data.test_labels, "runs": 5}
    accuracy = float(np.mean(student.predict(data.test_images.astype(np.float32), verbose=0).argmax(-1)
                             == data.test_labels))
    path = tmp_path / kind
    export._write(student, kind, path, data)
    figures = verify.check(kind, str(path), d)
    assert figures["test_accuracy"] == pytest.approx(accuracy, abs=0.01 if kind == "tflite-int8" else 1e-9)
    assert figures["p50_ms"] > 0
    other = next(k for k in export.FORMATS[::-1] if k != kind)  # savedmodel <- tflite-int8, tflites <- savedmodel
    export._write(student, other, tmp_path / other, data)
    with pytest.raises(Exception):  # noqa: B017 - any failure to load or to match is a refusal
        verify.check(kind, str(tmp_path / other), d)
