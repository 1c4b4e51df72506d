"""The student a user brings: ``student.builder: "students:small_cnn"`` in own_model.yaml.

The harness imports this file from the study file's folder and calls
``small_cnn(width, input_shape, num_classes)`` (docs/own-student.md). Plain Keras.
"""
from __future__ import annotations

import keras


def small_cnn(width: int, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A small CNN student whose size grows with ``width``.

    Input: float32 ``[batch, h, w, c]`` with values 0-255 (``input_shape`` = ``(h, w, c)``); the
    model rescales to 0-1 itself. Two stride-2 3x3 convolutions (``width``, then ``2 * width``
    filters, ReLU; each halves the height and width), then one linear layer to the **logits**
    ``[batch, num_classes]`` (no softmax: the harness applies the temperature to logits).
    Parameters for 28x28x1 and 10 classes: width 4: 4,266; 8: 9,098; 16: 20,490; 32: 50,186.
    """
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, logits, name=f"small_cnn_{width}")
