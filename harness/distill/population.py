"""A population: K students of one architecture trained as one model, each on its own batches.

Small students leave a CPU's (or a GPU's) matrix units mostly idle: a 2x64 MLP step at batch 128
is a few MFLOP, and per-step framework costs dominate. Stacking K students' weights along a
leading axis turns their K small products into one batched product per layer and their K
optimizer steps into one. Convolutions cannot be batched that way on a CPU (a grouped convolution
was far slower): there the members run as K independent graph branches, which the executor spreads
over the cores (`Population.call`). Nothing else changes:

* each member keeps its own initial weights (copied from a student built from its seed), its own
  batches (the caller stacks K seeded pipelines), its own loss (`temperature`, `alpha`: a scratch
  member is `alpha = 1`, the hard labels alone) and its own optimizer state (Adam, SGD and RMSprop
  are per parameter, so one optimizer over stacked variables does each member's arithmetic);
* the step minimises the sum of the members' losses: a member's weights appear in its own loss
  alone, so its gradient is exactly that of its lone run.

Only the order of floating-point sums differs (a batched product against K single ones), so a
member's weights match its lone run's to float tolerance (`tests/test_population.py`).

Supported layers: what the built-in MLP and CNN families build without dropout or batch norm
(Rescaling, Flatten, Dense, Conv2D, MaxPooling2D, GlobalAveragePooling2D), in float32. `plan`
says why a model cannot be stacked; the caller then trains its runs one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from harness.distill import methods

_PASSIVE = (keras.layers.InputLayer,)


def plan(student: keras.Model) -> tuple[list[keras.layers.Layer], str | None]:
    """(the layers to stack, None) or ([], why the model cannot be stacked)."""
    layers = []
    for layer in student.layers:
        if isinstance(layer, _PASSIVE):
            continue
        if layer.dtype_policy.name != "float32":
            return [], f"layer {layer.name} computes in {layer.dtype_policy.name} (populations are float32)"
        if isinstance(layer, keras.layers.Dense) and layer.activation in (keras.activations.relu,
                                                                         keras.activations.linear):
            layers.append(layer)
        elif isinstance(layer, keras.layers.Conv2D) and layer.activation in (keras.activations.relu,
                                                                            keras.activations.linear) \
                and layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1):
            layers.append(layer)
        elif isinstance(layer, (keras.layers.Rescaling, keras.layers.Flatten, keras.layers.MaxPooling2D,
                                keras.layers.GlobalAveragePooling2D)):
            layers.append(layer)
        else:
            return [], f"layer {layer.name} ({type(layer).__name__}) has no stacked form here"
    if len(student.inputs) != 1 or len(student.outputs) != 1:
        return [], "the model has several inputs or outputs"
    return layers, None


@dataclass(frozen=True)
class _Step:
    """One layer's computation, without the layer object (whose variables Keras would track)."""
    kind: str  # rescaling | flatten | dense | conv | max_pool | gap
    scale: float = 1.0
    offset: float = 0.0
    activation: Callable | None = None
    use_bias: bool = True
    strides: tuple = (1, 1)
    padding: str = "VALID"
    pool: tuple = (2, 2)


def _step(layer) -> _Step:
    if isinstance(layer, keras.layers.Rescaling):
        return _Step("rescaling", scale=layer.scale, offset=layer.offset)
    if isinstance(layer, keras.layers.Flatten):
        return _Step("flatten")
    if isinstance(layer, keras.layers.Dense):
        return _Step("dense", activation=layer.activation, use_bias=layer.use_bias)
    if isinstance(layer, keras.layers.Conv2D):
        return _Step("conv", activation=layer.activation, use_bias=layer.use_bias, strides=tuple(layer.strides),
                     padding=layer.padding.upper())
    if isinstance(layer, keras.layers.MaxPooling2D):
        return _Step("max_pool", pool=tuple(layer.pool_size), strides=tuple(layer.strides),
                     padding=layer.padding.upper())
    return _Step("gap")


def population_loss(labels, student_logits, teacher_logits, temperature, alpha, method=None, own=None):
    """Per-member `(total, hard, soft)`, each [K], as the method's loss computes them one by one.

    labels [K, B] int; student_logits [K, B, C]; teacher_logits [K, B, C] (or [K, B, M, C] for an
    ensemble, as a cached batch carries it); temperature, alpha and `own`'s values [K] float32;
    `method`: a registered method class (None: kd). Its `loss` (distill/methods/) is the one run's.
    """
    t = tf.cast(teacher_logits, tf.float32)
    if t.shape.rank == 4:  # the ensemble's members to the third-to-last axis, as the losses take them
        t = tf.transpose(t, [0, 2, 1, 3])
    method = method or methods.get(methods.DEFAULT)
    return method.loss(labels, student_logits, t, temperature, alpha, own or {})


class _VectorMean(keras.metrics.Metric):
    """A per-member running mean ([K]): of batch means (as Keras' `Mean` of a loss) or of hits."""

    def __init__(self, k: int, name: str):
        super().__init__(name=name)
        self.total = self.add_variable((k,), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, values, count=1.0):
        """values [K]: this step's sums; count: what they count (1 for a batch mean, B for hits)."""
        self.total.assign_add(tf.cast(values, tf.float32))
        self.count.assign_add(tf.cast(count, tf.float32))

    def result(self):
        return self.total / tf.maximum(self.count, 1.0)


class Population(keras.Model):
    """K stacked copies of one student architecture (see the module's docstring).

    `students`: K built Keras students of one architecture (their weights are copied in);
    `temperature`, `alpha`: [K] per member; `method`: a registered method class whose `stacks` is
    true (None: kd), `own`: its own parameters, each [K]. Trained with `fit` on batches
    `(x [K, B, h, w, c], {"labels": [K, B], "teacher_logits": [K, B, C]})`.
    """

    def __init__(self, students: list[keras.Model], temperature, alpha, method=None, own: dict | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        layers, why = plan(students[0])
        if why:
            raise ValueError(f"cannot stack this student: {why}")
        self.k = len(students)
        self._steps = [_step(layer) for layer in layers]
        # Layers by position: Keras numbers auto-named layers per process, so names differ.
        self._positions = [students[0].layers.index(layer) for layer in layers]
        shapes = [[tuple(w.shape) for w in s.weights] for s in students]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("cannot stack students of different architectures")
        self._stacked: list[list] = []  # per layer: its stacked variables, in the layer's own order
        for layer, i in zip(layers, self._positions):
            members = [s.layers[i] for s in students]
            self._stacked.append([keras.Variable(np.stack([m.weights[j].numpy() for m in members]),
                                                 name=f"{layer.name}_{j}") for j in range(len(layer.weights))])
        self._flat = [v for ws in self._stacked for v in ws]  # what Keras tracks and trains
        self._temperature = keras.Variable(np.asarray(temperature, np.float32), trainable=False, name="temperature")
        self._alpha = keras.Variable(np.asarray(alpha, np.float32), trainable=False, name="alpha")
        self._method = method or methods.get(methods.DEFAULT)
        if not self._method.stacks:
            raise ValueError(f"method {self._method.name} does not train as a population")
        self._own = {k: keras.Variable(np.asarray(v, np.float32), trainable=False, name=k)
                     for k, v in (own or {}).items()}
        self.member_loss = _VectorMean(self.k, "member_loss")
        self.member_hard = _VectorMean(self.k, "member_hard_loss")
        self.member_soft = _VectorMean(self.k, "member_soft_loss")
        self.member_accuracy = _VectorMean(self.k, "member_accuracy")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.member_loss, self.member_hard, self.member_soft, self.member_accuracy]

    def call(self, x, training=False):
        """x: float32 [K, B, h, w, c] -> logits [K, B, classes].

        From the first convolution or pooling to the global pooling or flatten that ends them, the
        members' activations are a list of K tensors [B, h, w, c], one graph branch per member: each
        member's convolution, bias and ReLU are the lone student's ops (TensorFlow's remapper fuses
        them into one oneDNN convolution), no activation is copied into a stacked tensor and out
        again, and the executor runs the K independent branches on both cores at once. Each stacked
        variable is split once per step (`tf.unstack`: one op, its gradient one stack), not sliced
        once per member. Dense layers stay one batched product over the stacked members."""
        k = self.k
        for step, weights in zip(self._steps, self._stacked):
            if step.kind == "rescaling":  # as Keras' Rescaling: cast, times scale, plus offset
                x = tf.cast(x, tf.float32) * tf.cast(step.scale, tf.float32) + tf.cast(step.offset, tf.float32)
            elif step.kind in ("conv", "max_pool", "gap"):  # per member: a list of K tensors [B, h, w, c]
                # Measured (docs/performance.md, "A CNN population as K branches"): the members as one
                # stacked tensor, sliced for each convolution and stacked after it, made K = 10
                # together 0.7-0.8x as fast as 10 lone runs; a grouped convolution (the members on the
                # channel axis, one `tf.nn.conv2d` of K groups) was slower still.
                xs = x if isinstance(x, list) else tf.unstack(x, num=k)
                if step.kind == "conv":
                    kernels = tf.unstack(weights[0], num=k)
                    biases = tf.unstack(weights[1], num=k) if step.use_bias else [None] * k
                    x = []
                    for xm, km, bm in zip(xs, kernels, biases):
                        y = tf.nn.conv2d(xm, km, strides=list(step.strides), padding=step.padding)
                        x.append(step.activation(tf.nn.bias_add(y, bm) if bm is not None else y))
                elif step.kind == "max_pool":
                    x = [tf.nn.max_pool2d(xm, list(step.pool), list(step.strides), step.padding) for xm in xs]
                else:  # global average pooling: the branches end, stacked for the dense head
                    x = tf.stack([tf.reduce_mean(xm, axis=[1, 2]) for xm in xs])
            else:
                if isinstance(x, list):
                    x = tf.stack(x)
                if step.kind == "flatten":
                    x = tf.reshape(x, [k, tf.shape(x)[1], -1])
                else:  # dense
                    x = tf.einsum("kbi,kio->kbo", x, weights[0])
                    if step.use_bias:
                        x = x + weights[1][:, None, :]
                    x = step.activation(x)
        return tf.stack(x) if isinstance(x, list) else x

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            total, hard, soft = population_loss(y["labels"], logits, y["teacher_logits"],
                                                self._temperature, self._alpha, self._method, self._own)
            loss = tf.reduce_sum(total)  # each member's weights see their own loss alone
        weights = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                tf.cast(y["labels"], tf.int32)), tf.float32)
        self.member_loss.update_state(total)
        self.member_hard.update_state(hard)
        self.member_soft.update_state(soft)
        self.member_accuracy.update_state(tf.reduce_sum(hits, axis=1), tf.shape(hits)[1])
        self.loss_tracker.update_state(tf.reduce_mean(total))
        return {"loss": self.loss_tracker.result()}

    def copy_into(self, m: int, student: keras.Model) -> keras.Model:
        """Member m's trained weights into `student` (a model of the same architecture)."""
        for i, ws in zip(self._positions, self._stacked):
            target = student.layers[i]
            for dst, src in zip(target.weights, ws):
                dst.assign(src[m])
        return student
