"""The student as TFLite: float32, or full-integer int8 calibrated on transfer-set images.

Both go Keras -> SavedModel (`keras.export.ExportArchive`) -> `tf.lite.TFLiteConverter`,
the path Keras' own LiteRT export takes. The float model takes float32 images
(0-255) and returns float32 logits. The int8 model has int8 weights and
activations (`TFLITE_BUILTINS_INT8` only), takes uint8 images as the dataset
gives them and returns dequantised float32 logits. Its input quantisation is
pinned to scale 1, zero point 0 (exact for 0-255) by a fake-quant op over
[0, 255] in front of the student, whatever range the calibration images span.
Calibration uses transfer-set images only, never validation or test.

A student trained in bfloat16 (`training.precision`) is converted from a float32
copy (`float32_copy`; its variables are float32 already): the converter cannot
translate bfloat16 compute into a flatbuffer.
"""

from __future__ import annotations

import logging
import tempfile
import warnings

import numpy as np

from harness.logs import captured_stderr

log = logging.getLogger(__name__)
KINDS = ("tflite", "tflite-int8")
CALIBRATION_IMAGES = 300


def float32_copy(model):
    """`model` itself when every layer computes in float32, else a copy built with float32 layers
    and the same (float32) weights: what the exports are made from (Keras dtype policies)."""
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _saved_model(student, directory: str, pin_input: bool = False) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(student)
    shape = [None, *student.input_shape[1:]]

    def serve(x):
        if pin_input:  # the int8 input's range: 0-255 in 8 bits, i.e. scale 1, zero point 0
            x = tf.quantization.fake_quant_with_min_max_args(x, min=0.0, max=255.0, num_bits=8)
        return student(x, training=False)

    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    archive.write_out(directory, verbose=False)


def convert(student, kind: str, calibration: np.ndarray | None = None) -> bytes:
    """The TFLite flatbuffer of `student` (`kind`: tflite | tflite-int8)."""
    import tensorflow as tf

    if kind not in KINDS:
        raise ValueError(f"unknown TFLite kind {kind!r}; allowed: {', '.join(KINDS)}")
    student = float32_copy(student)
    with tempfile.TemporaryDirectory() as d:
        _saved_model(student, d, pin_input=kind == "tflite-int8")
        conv = tf.lite.TFLiteConverter.from_saved_model(d, signature_keys=["serving_default"])
        if kind == "tflite-int8":
            if calibration is None or not len(calibration):
                raise ValueError("tflite-int8 needs calibration images (from the transfer set)")
            images = calibration.astype(np.float32)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.float32
        # The converter prints a summary from C++ (`fully_quantize: 0, inference_type: 6, ...`)
        # on fd 2: logged at DEBUG (`-v`), or at WARNING when the conversion fails.
        with captured_stderr(log, "the TFLite converter"):
            return conv.convert()


def interpreter(model_path: str | None = None, model_content: bytes | None = None, threads: int = 1):
    """A TFLite interpreter on `threads` threads: LiteRT's (`ai_edge_litert`) when installed, else
    TensorFlow's `tf.lite.Interpreter` (deprecated in favour of LiteRT, still in TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return Interpreter(model_path=model_path, model_content=model_content, num_threads=threads)


def predict(interp, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Logits of `images` through the interpreter, `batch` at a time."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    chunks = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        interp.resize_tensor_input(inp["index"], list(x.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        chunks.append(interp.get_tensor(out["index"]).copy())
    return np.concatenate(chunks)
