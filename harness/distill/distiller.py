"""`Distiller`: a Keras model whose `train_step` mixes hard labels and soft targets.

Trained with plain `fit`, so callbacks, progress bars and `validation_data`
behave as for any Keras model. Two teacher modes give the same result:

* cached: each batch carries the teacher's logits, computed once over the
  transfer set (`{"labels": y, "teacher_logits": t}` as the target); the
  teacher never runs inside the step. The default: a study pays for the
  teacher once, not once per trial.
* online: the teacher runs inside the step on the same (possibly augmented)
  inputs as the student. Needed when the transfer set is augmented.

With `masked=True` some examples carry the label -1 (unlabeled transfer
images): they learn from the soft targets alone (`losses.py` says how the
hard term is then normalised), and the training accuracy counts only the
labeled ones.

Every trainable weight of the Distiller trains: the student's, and those a method adds beside it (a
FitNets adapter); the frozen teacher's never. The student alone is what is saved and exported
(`Distiller.student`), as in Keras' own `Distiller`. `test_step` scores the student alone
(cross-entropy and accuracy), so validation numbers compare directly with a
student trained from scratch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from harness.distill import methods
from harness.distill.methods import Method


class Distiller(keras.Model):
    def __init__(self, student: keras.Model, teacher=None, *, temperature: float = 4.0,
                 alpha: float = 0.1, method: str | Method | None = None, steps_per_epoch: int = 1,
                 masked: bool = False, **kwargs):
        """`teacher`: None (cached mode), a model, or a list of models (an ensemble).

        `method`: a registered method's name or a `Method` (None: kd; `distill/methods/`), fixed for
        the compiled step; its numbers (`set_method`) are variables. `steps_per_epoch`: what turns
        the optimizer's step count into the epoch a method's warm-up needs (in the step, so one
        compiled graph serves every epoch). `masked` (methods that allow it: kd): the label -1
        marks an unlabeled example (soft targets only). ValueError for an unknown method.
        """
        super().__init__(**kwargs)
        chosen = method if isinstance(method, Method) else Method(method, temperature, alpha)
        self.spec = chosen.spec
        self.method = chosen.name
        if masked and not self.spec.masked:
            raise ValueError(f"unlabeled examples (masked) are supported with method "
                             f"{' or '.join(n for n in methods.names() if methods.get(n).masked)}, not {self.method}")
        self.student = student
        self.masked = masked
        members = teacher if isinstance(teacher, (list, tuple)) else ([teacher] if teacher else [])
        for m in members:
            m.trainable = False
        self.teachers = list(members)
        # Variables, not Python floats, so one compiled step serves every (T, alpha) of a shape
        # (`compiled.py`); the loss casts them to float32 as it did the floats.
        self._temperature = keras.Variable(float(temperature), trainable=False, dtype="float32",
                                           name="temperature")
        self._alpha = keras.Variable(float(alpha), trainable=False, dtype="float32", name="alpha")
        numeric = {k: v for k, v in chosen.own().items() if isinstance(v, (int, float))}
        if self.spec.uses_epoch:
            numeric["steps_per_epoch"] = steps_per_epoch
        self._own = {k: keras.Variable(float(v), trainable=False, dtype="float32", name=k)
                     for k, v in numeric.items()}
        self.spec.attach(self, chosen)  # what the method trains or reads beside the student
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def temperature(self) -> float:
        return float(self._temperature.numpy())

    @property
    def alpha(self) -> float:
        return float(self._alpha.numpy())

    def set_loss(self, temperature: float, alpha: float) -> None:
        self._temperature.assign(float(temperature))
        self._alpha.assign(float(alpha))

    def set_method(self, method: Method, steps_per_epoch: int | None = None) -> None:
        """The loss's numbers for the next `fit` (the method itself must be this Distiller's)."""
        if method.name != self.method:
            raise ValueError(f"this Distiller was compiled for {self.method}, not {method.name}")
        self.set_loss(method.temperature, method.alpha)
        self.spec.reset(self)
        for k, v in method.own().items():
            if k in self._own:
                self._own[k].assign(float(v))
        if steps_per_epoch is not None and "steps_per_epoch" in self._own:
            self._own["steps_per_epoch"].assign(float(steps_per_epoch))

    def epoch(self):
        """The current epoch, from 1: optimizer steps taken // steps per epoch + 1 (float32)."""
        steps = tf.cast(self.optimizer.iterations, tf.float32)
        return tf.floor(steps / self._own["steps_per_epoch"]) + 1.0

    def loss_terms(self, labels, student_logits, teacher_logits, extra=None):
        """`(total, hard, soft)` of this Distiller's method (`distill/methods/`); `extra`: what the
        method's `forward` returned beside the logits (a FitNets hint)."""
        epoch = self.epoch() if self.spec.uses_epoch else None
        return self.spec.step_loss(self, labels, student_logits, teacher_logits, extra or {}, epoch)

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_tracker, self.soft_tracker, self.accuracy_metric]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _teacher_logits(self, x, y):
        if isinstance(y, dict):
            t = y["teacher_logits"]
            if t.shape.rank == 3:  # cached ensemble: [batch, members, classes]
                t = tf.transpose(t, [1, 0, 2])
            return y["labels"], tf.stop_gradient(t)
        if not self.teachers:
            raise ValueError("Distiller has no teacher: pass one, or give targets as "
                             "{'labels': ..., 'teacher_logits': ...} (cached mode)")
        outs = [m(x, training=False) for m in self.teachers]
        t = outs[0] if len(outs) == 1 else tf.stack(outs, axis=0)
        return y, tf.stop_gradient(t)

    def train_step(self, data):
        x, y = data[0], data[1]
        labels, teacher_logits = self._teacher_logits(x, y)
        with tf.GradientTape() as tape:
            student_logits, extra = self.spec.forward(self, x, y)
            total, hard, soft = self.loss_terms(labels, student_logits, teacher_logits, extra)
        weights = self.trainable_variables  # the student's and the method's own (an adapter); no teacher's
        grads = tape.gradient(total, weights)
        self.optimizer.apply_gradients(zip(grads, weights))
        self.loss_tracker.update_state(total)
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        if self.masked:  # an unlabeled example is neither right nor wrong
            labels = tf.cast(labels, tf.int32)
            self.accuracy_metric.update_state(tf.maximum(labels, 0), student_logits,
                                              sample_weight=tf.cast(labels >= 0, tf.float32))
        else:
            self.accuracy_metric.update_state(labels, student_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data[0], data[1]
        labels = y["labels"] if isinstance(y, dict) else y
        logits = tf.cast(self.student(x, training=False), tf.float32)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=logits))
        self.loss_tracker.update_state(ce)
        self.accuracy_metric.update_state(labels, logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_metric.result()}


def make_optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    """`learning_rate`: a float or a `keras.optimizers.schedules` object."""
    return {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
            "rmsprop": keras.optimizers.RMSprop}[name](learning_rate=learning_rate)


def compile_plain(model: keras.Model, optimizer, learning_rate=None,
                  jit_compile: bool = True, steps_per_execution: int = 32) -> keras.Model:
    """Plain cross-entropy training of a model on hard labels (teachers, scratch twins).

    `optimizer`: a Keras optimizer, or a name used with `learning_rate`.
    """
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, learning_rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model
