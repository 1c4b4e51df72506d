"""Batch normalization whose training step is one fused kernel (FusedBatchNormV3; oneDNN on a CPU).

Keras 3's `BatchNormalization` on TensorFlow trains through `tf.nn.moments` and
`tf.nn.batch_normalization`: about ten element-wise ops forward and more backward, each a full
pass over the activations. In a compact student those passes cost more than the convolutions: a
depthwise-separable student of 4,698 parameters trained 2.28x slower per epoch with Keras' batch
norm than with `FusedBatchNormV3`, the same arithmetic in one kernel forward and one backward
(`docs/probes/fused_batch_norm.py`; docs/performance.md, "Issue 30 on an idle machine"). Keras 3 dropped tf.keras 2's `fused=True` option, so
`fused(layer)` gives one Keras `BatchNormalization` instance that training call. The layer stays
Keras' own class: every `.keras`, SavedModel and TFLite file of a student loads in plain Keras, and
inference (and any case below that the kernel does not cover) runs Keras' own code.

The fused call computes what Keras' does (Ioffe & Szegedy 2015; `keras.layers.BatchNormalization`):
the batch's mean and biased variance over batch, height and width normalize the batch; the moving
statistics move by `momentum`. The kernel returns the unbiased (n - 1) variance for the moving
average, so it is scaled back by (n - 1) / n. It equals Keras' to float32 rounding
(`tests/test_batch_norm.py`).
"""

from __future__ import annotations

import types

import keras
import tensorflow as tf

# tf.nn's fused kernel raises epsilon to this floor (cuDNN's); below it the two would differ.
_MIN_EPSILON = 1.001e-5


def _covered(layer: keras.layers.BatchNormalization, inputs, training, mask) -> bool:
    """Whether the fused kernel computes exactly Keras' training call for these arguments."""
    return (training is True and layer.trainable and mask is None and not layer.renorm and not layer.synchronized
            and inputs.shape.rank == 4 and layer.axis in (-1, 3) and inputs.dtype == tf.float32
            and layer.compute_dtype == "float32" and layer.epsilon >= _MIN_EPSILON)


def _call(self, inputs, training=None, mask=None):
    """Keras' `BatchNormalization.call`, its float32 NHWC training case as one FusedBatchNormV3."""
    if not _covered(self, inputs, training, mask):
        return keras.layers.BatchNormalization.call(self, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
    beta = self.beta if self.center else tf.zeros([channels], tf.float32)
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(inputs, gamma, beta, epsilon=self.epsilon,
                                                         data_format="NHWC", is_training=True)
    n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
    variance = variance * (n - 1.0) / n  # the kernel's moving-average variance is unbiased; Keras' is not
    m = self.momentum
    self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
    self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
    return y


def fused(layer: keras.layers.BatchNormalization) -> keras.layers.BatchNormalization:
    """`layer` (a Keras `BatchNormalization`, before it is called) with the fused training call;
    returns the same object. Its class, config and weights are Keras' own."""
    if not isinstance(layer, keras.layers.BatchNormalization):
        raise TypeError(f"fused() takes a keras.layers.BatchNormalization, not {type(layer).__name__}")
    layer.call = types.MethodType(_call, layer)
    return layer
