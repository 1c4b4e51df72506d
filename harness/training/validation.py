"""Validation at the cost of its arithmetic: one compiled forward pass per epoch over images in memory.

Keras' `fit(validation_data=...)` runs an `evaluate` per epoch: a new iterator over a tf.data
pipeline, its cast and prefetch, and the test function's dispatch. For the small students here
that cost about 15 times the pass's arithmetic (0.24 s for a 2x256 MLP over 6,000 images, whose
forward pass is about 3 GFLOP: some 15 ms). `Validation` keeps the validation images as one
float32 tensor built once per process and runs one `tf.function` per student (traced once per
student object; `compiled.py` reuses students across trials) over all of them, then puts
`val_loss` and `val_accuracy` into the epoch's logs, where the pruner, MLflow's callback and
`fit`'s history read them as if Keras had validated.

The figures are the ones `evaluate` gave: accuracy is the share of argmax hits; the loss is
the mean cross-entropy per example for a plainly compiled model (Keras weights its loss tracker
by batch size), and the mean of the 1,024-image batches' means for the `Distiller` (its
`test_step` feeds one scalar per batch to a `Mean`), computed from the same logits.
"""

from __future__ import annotations

import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from harness.distill.models import flops_per_example

# The batch size Keras' `evaluate` ran validation with here before: the Distiller's val_loss is a
# mean of these batches' means.
EVAL_BATCH = 1024


class Forward:
    """One traced forward pass per student: `student(x, training=False)` as float32 logits.

    Traced for any number of images (the batch axis unknown), so one trace serves the validation
    split every epoch and the test split once (a twin's or a confirmation run's scores)."""

    def __init__(self):
        self._fns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._held: dict[int, tuple[np.ndarray, tf.Tensor]] = {}

    def __call__(self, student: keras.Model, images: tf.Tensor) -> np.ndarray:
        """`images`: float32 [n, h, w, c], 0-255. Returns float32 logits [n, classes]."""
        fn = self._fns.get(student)
        if fn is None:
            def forward_logits(x):
                return tf.cast(student(x, training=False), tf.float32)

            spec = tf.TensorSpec([None, *images.shape[1:]], tf.float32)
            fn = self._fns[student] = tf.function(forward_logits, input_signature=[spec])
        return fn(images).numpy()

    def held(self, images: np.ndarray) -> tf.Tensor:
        """`images` (a split's array, held for the process: uint8 or float [n, h, w, c], 0-255) as one
        float32 tensor, converted on the first call only: the validation split once per process (every
        depth's context shares it), the test split when a run is first scored on it."""
        entry = self._held.get(id(images))
        if entry is None or entry[0] is not images:
            entry = self._held[id(images)] = (images, tf.constant(np.asarray(images, np.float32)))
        return entry[1]


def scores(logits: np.ndarray, labels: np.ndarray, batch_means: bool) -> tuple[float, float]:
    """(loss, accuracy) of float32 logits [n, classes] against int labels [n].

    `batch_means`: the loss as the mean of the EVAL_BATCH-image batches' mean cross-entropies
    (the `Distiller`'s `test_step`); else the mean over examples (a plainly compiled model).
    """
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]
    if batch_means:
        loss = float(np.mean([ce[i:i + EVAL_BATCH].mean() for i in range(0, len(ce), EVAL_BATCH)]))
    else:
        loss = float(ce.mean())
    return loss, float(np.mean(np.argmax(logits, axis=1) == labels))


class Validation(keras.callbacks.Callback):
    """Puts `val_loss` and `val_accuracy` into the logs of every epoch (or of the last one only).

    Place it before every callback that reads them (the pruner, MLflow's): Keras hands one logs
    dict to the callbacks in order, and `fit`'s history is recorded last.
    """

    def __init__(self, forward: Forward, images: tf.Tensor, labels: np.ndarray, *, student: keras.Model,
                 every_epoch: bool = True, batch_means: bool = True, clock=None):
        super().__init__()
        self.forward, self.images, self.labels = forward, images, labels
        self.student, self.every_epoch, self.batch_means, self.clock = student, every_epoch, batch_means, clock

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not (self.every_epoch or epoch + 1 == self.params.get("epochs")):
            return
        t0 = time.perf_counter()
        loss, acc = scores(self.forward(self.student, self.images), self.labels, self.batch_means)
        logs["val_loss"], logs["val_accuracy"] = loss, acc
        if self.clock is not None:
            self.clock.add("validation", time.perf_counter() - t0)
            self.clock.add("validation_flops", float(flops_per_example(self.student)) * len(self.labels))
