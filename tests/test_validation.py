"""Validation in one compiled forward pass gives the figures Keras' `evaluate` gave, every epoch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness.data import pipelines
from harness.distill.distiller import Distiller, compile_plain
from harness.distill.models import flops_per_example, mlp
from harness.training.clock import TrialClock
from harness.training.validation import EVAL_BATCH, Forward, Validation, scores


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 2 * EVAL_BATCH + 300  # a short last batch: the Distiller's mean of batch means differs from the example mean
    images = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    return images, labels


def _student(seed=0):
    keras.utils.set_random_seed(seed)
    return mlp((8, 8, 1), 10, [16], name="s")


@pytest.mark.parametrize("distilled", [True, False])
def test_scores_equal_keras_evaluate(data, distilled):
    images, labels = data
    student = _student()
    if distilled:
        model = Distiller(student, temperature=2.0, alpha=0.5)
        model.compile(optimizer="adam", jit_compile=False)
    else:
        model = compile_plain(student, "adam", 1e-3, jit_compile=False, steps_per_execution=1)
    want = model.evaluate(pipelines.pipeline(images, labels, EVAL_BATCH), verbose=0, return_dict=True)
    loss, acc = scores(Forward()(student, tf.constant(images, tf.float32)), labels, batch_means=distilled)
    assert acc == pytest.approx(want["accuracy"], abs=1e-7)
    assert loss == pytest.approx(want["loss"], rel=1e-5)
    # the two loss conventions really differ here, so the test can tell them apart
    other, _ = scores(Forward()(student, tf.constant(images, tf.float32)), labels, batch_means=not distilled)
    assert abs(other - want["loss"]) > 1e-4


def test_every_epoch_or_the_last_only(data):
    images, labels = data
    x = tf.constant(images, tf.float32)
    for every_epoch, want_epochs in ((True, 3), (False, 1)):
        student = _student()
        compile_plain(student, "adam", 1e-3, jit_compile=False, steps_per_execution=1)
        seen, clock = [], TrialClock()
        probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs.get("val_accuracy")))
        clock.begin()
        hist = student.fit(pipelines.pipeline(images, labels, 256), epochs=3, verbose=0,
                           callbacks=[Validation(Forward(), x, labels, student=student, every_epoch=every_epoch,
                                                 batch_means=False, clock=clock), probe])
        clock.end()
        assert len(hist.history["val_accuracy"]) == want_epochs
        # the clock holds the passes' seconds and their forward FLOPs (the bench's validation_gflops)
        (trial,) = clock.trials
        assert trial["validation"] > 0
        assert trial["validation_flops"] == want_epochs * flops_per_example(student) * len(labels)
        # a callback after it reads the figure in the same epoch (the pruner, MLflow's callback)
        assert [v for v in seen if v is not None] == hist.history["val_accuracy"]
        _, acc = scores(Forward()(student, x), labels, batch_means=False)
        assert hist.history["val_accuracy"][-1] == acc


def test_one_trace_per_student_for_both_splits(data):
    """The validation split every epoch and the test split (another size) share one trace; the
    test logits are those the eager batches of `predict_logits` gave."""
    from harness.data.evaluate import predict_logits

    images, _ = data
    forward, student = Forward(), _student()
    x = tf.constant(images, tf.float32)
    forward(student, x)
    forward(student, x)
    test = images[:700]
    held = forward.held(test)
    assert held is forward.held(test) and held.dtype == tf.float32  # converted once per array
    assert forward.held(images) is not held
    np.testing.assert_allclose(forward(student, held), predict_logits(student, test), rtol=1e-6, atol=1e-6)
    assert forward._fns[student].experimental_get_tracing_count() == 1
