"""What a user's teacher takes and gives, read from the model itself: its input shape and dtype
(a Keras model's input, or a SavedModel signature's `TensorSpec`), the dtype it computes its
output in, and the load errors turned into what to do.

A SavedModel exported for serving often takes uint8 images (TensorFlow Serving's and TF Hub's
image signatures do); the harness feeds float32 0-255, so `cast_input` rounds and clips them to
the integer type's range, or casts them to the float type the signature takes.
A model computing in bfloat16 or float16 (a `mixed_*` Keras policy) gives softmax rows that sum
to 1 only to that precision: `sum_tolerance` is the slack its row sums are judged with.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Row sums of a softmax computed in a 16-bit float differ from 1 by the rounding of each
# probability (half an epsilon each, relative) and of the sum: 8 epsilons covers 10-1,000 classes
# (bfloat16: 0.0625, float16: 0.0078); a float32 or float64 model keeps the strict 1e-3.
SUM_EPSILONS = 8
FLOAT32_TOLERANCE = 1e-3
EPSILON = {"bfloat16": 2.0**-7, "float16": 2.0**-10}


def input_specs(raw) -> list:
    """The model's input specs (objects with `.shape` and `.dtype`), when it says."""
    if isinstance(raw, keras.layers.TFSMLayer):
        fn = raw.call_endpoint_fn
        sig = getattr(fn, "structured_input_signature", None)
        return tf.nest.flatten(sig if sig is not None else (getattr(fn, "input_signature", None) or []))
    return list(getattr(raw, "inputs", None) or [])


def expected_shape(raw) -> tuple | None:
    """The input shape [h, w, c] a model expects (None for unknown dimensions), when it says."""
    specs = input_specs(raw)
    return tuple(specs[0].shape)[1:] if len(specs) == 1 else None


def input_dtype(raw) -> str:
    """The dtype of the model's one input ("float32" when it does not say)."""
    specs = input_specs(raw)
    if len(specs) != 1 or getattr(specs[0], "dtype", None) is None:
        return "float32"
    return tf.as_dtype(specs[0].dtype).name


def cast_input(x, dtype: str):
    """Float32 images (symbolic) as the model's input dtype: integers rounded and clipped to the
    type's range, other floats cast."""
    if dtype == "float32":
        return x
    if tf.as_dtype(dtype).is_integer:
        info = np.iinfo(tf.as_dtype(dtype).as_numpy_dtype)
        x = keras.ops.clip(keras.ops.round(x), max(info.min, -2.0**31), min(info.max, 2.0**31))
    return keras.ops.cast(x, dtype)


def sum_tolerance(dtype: str) -> float:
    """How far from 1 a row of probabilities computed in `dtype` may sum (see SUM_EPSILONS)."""
    return max(FLOAT32_TOLERANCE, SUM_EPSILONS * EPSILON.get(tf.as_dtype(dtype).name, 0.0))


def load_error(ref: str, e: Exception) -> str:
    """A reader's exception as one line saying what to do."""
    text = str(e).strip()
    first = (text.splitlines() or [type(e).__name__])[0]
    if "Lambda" in text:
        return (f"{ref}: holds a Lambda layer, which Keras does not load in safe mode (its code would run "
                "unchecked); re-save the model without it (Keras' own layers), or export it as a SavedModel "
                "folder (model.export(PATH)) and give that folder as teacher.model")
    if "Could not locate" in text or "register_keras_serializable" in text or "custom_objects" in text:
        return (f"{ref}: uses a custom layer or function Keras cannot find ({first[:120]}); re-save the model "
                "with Keras' own layers only, or as a SavedModel folder (model.export(PATH)), which needs no "
                "Python classes to load")
    return f"{ref}: not a model Keras can load ({first[:200]})"
