"""The fused batch norm (distill/batch_norm.py) trains as Keras' own: to float32 rounding after a
step and after an epoch, through the FusedBatchNormV3 kernel, and its students save as plain Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness.distill import batch_norm, families, models
from harness.distill.distiller import Distiller

SHAPE = (12, 12, 1)


def stock(model: keras.Model) -> keras.Model:
    """The same architecture and weights, every batch norm Keras' own call."""
    plain = keras.Model.from_config(model.get_config())
    plain.set_weights(model.get_weights())
    return plain


def data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n,) + SHAPE).astype("float32")
    y = rng.integers(0, 10, n)
    logits = rng.normal(0, 3, (n, 10)).astype("float32")
    return x, y, logits


def op_types(model: keras.Model, x) -> set[str]:
    """The op types of the model's training-mode forward graph."""
    fn = tf.function(lambda t: model(t, training=True))
    return {op.type for op in fn.get_concrete_function(tf.TensorSpec((None,) + SHAPE)).graph.get_operations()}


@pytest.mark.parametrize("build", [
    lambda: families.separable(SHAPE, 10, 4, 2, batch_norm=True),
    lambda: models.cnn(SHAPE, 10, [4, 8], head=8, batch_norm=True, pooling="gap"),
], ids=["separable", "cnn"])
def test_fused_step_equals_keras(build):
    keras.utils.set_random_seed(0)
    fused = build()
    plain = stock(fused)
    assert "FusedBatchNormV3" in op_types(fused, None)  # the kernel is really taken
    assert "FusedBatchNormV3" not in op_types(plain, None)
    for m in (fused, plain):  # the moving statistics become this batch's, and a small batch's
        for layer in m.layers:  # biased and unbiased variances differ by 1/(n - 1): 0.3% at 6x6x8
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0
    x, y, _ = data(8)
    grads = []
    for m in (fused, plain):
        with tf.GradientTape() as tape:
            out = m(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=True))
        grads.append((out.numpy(), [g.numpy() for g in tape.gradient(loss, m.trainable_variables)],
                      [v.numpy() for v in m.non_trainable_variables]))
    (out_f, g_f, moving_f), (out_p, g_p, moving_p) = grads
    np.testing.assert_allclose(out_f, out_p, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_f, g_p):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    for a, b in zip(moving_f, moving_p):  # the moving mean and the biased moving variance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # inference is Keras' own code on both, over moving statistics equal to rounding
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), rtol=1e-4,
                               atol=1e-6)


def test_fused_student_after_an_epoch_equals_keras():
    """A separable student distilled for one epoch (4 steps of Adam) with each batch norm."""
    keras.utils.set_random_seed(1)
    fused = families.separable(SHAPE, 10, 4, 2, batch_norm=True)
    plain = stock(fused)
    x, y, logits = data(512, seed=1)
    ds = tf.data.Dataset.from_tensor_slices((x, {"labels": y, "teacher_logits": logits})).batch(128)
    for m in (fused, plain):
        d = Distiller(m, temperature=4.0, alpha=0.1)
        d.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        d.fit(ds, epochs=1, verbose=0)
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_fused_student_saves_as_plain_keras(tmp_path):
    keras.utils.set_random_seed(2)
    m = families.separable(SHAPE, 10, 4, 2, batch_norm=True)
    path = tmp_path / "student.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)  # no custom objects: the layers are Keras' own
    bns = [layer for layer in loaded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(type(layer) is keras.layers.BatchNormalization for layer in bns)
    x, _, _ = data(8)
    np.testing.assert_array_equal(loaded(x).numpy(), m(x).numpy())


def test_fused_falls_back_where_the_kernel_differs():
    """bfloat16 compute, a frozen layer: Keras' own call."""
    keras.utils.set_random_seed(3)
    bf16 = families.separable(SHAPE, 10, 4, 2, batch_norm=True, dtype="mixed_bfloat16")
    assert "FusedBatchNormV3" not in op_types(bf16, None)
    frozen = families.separable(SHAPE, 10, 4, 2, batch_norm=True)
    for layer in frozen.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    assert "FusedBatchNormV3" not in op_types(frozen, None)
    with pytest.raises(TypeError, match="BatchNormalization"):
        batch_norm.fused(keras.layers.Dense(3))
