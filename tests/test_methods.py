"""DKD and logit standardization: each loss against an independent float64 NumPy computation (as the
reference implementations write it), DKD against the identity of its paper, the warm-up in a
compiled `fit`, and the method's bad input."""

import numpy as np
import pytest
import tensorflow as tf

from harness import config
from harness.distill.losses import distillation_loss, dkd_loss, dkd_terms, logit_std_loss, standardize


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _kl(p_log, q_log):
    with np.errstate(invalid="ignore"):  # -inf - -inf where the target class is removed: masked
        return np.sum(np.where(np.isinf(p_log), 0.0, np.exp(p_log) * (p_log - q_log)), axis=-1)


def _hard(labels, s):
    return -np.mean(_log_softmax(s)[np.arange(len(labels)), labels])


def numpy_dkd(labels, s, t, temperature, alpha, a, b, epoch=1, warmup=0):
    """mdistiller's dkd_loss in float64: binary (target, rest) probabilities, then the non-target
    softmax with the target class removed (exactly, not by mdistiller's -1000 shift)."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    gt = np.eye(s.shape[1], dtype=bool)[labels]
    p, q = _softmax(t / temperature), _softmax(s / temperature)
    bp = np.stack([p[gt], np.where(gt, 0, p).sum(1)], 1)
    bq = np.stack([q[gt], np.where(gt, 0, q).sum(1)], 1)
    tckd = np.sum(bp * (np.log(bp) - np.log(bq)), axis=1)
    lp = _log_softmax(np.where(gt, -np.inf, t / temperature))
    lq = _log_softmax(np.where(gt, -np.inf, s / temperature))
    nckd = _kl(lp, np.where(gt, 0.0, lq))
    warm = min(epoch / warmup, 1.0) if warmup > 0 else 1.0
    soft = warm * temperature ** 2 * np.mean(a * tckd + b * nckd)
    hard = _hard(labels, s)
    return alpha * hard + (1 - alpha) * soft, hard, soft


def numpy_logit_std(labels, s, t, temperature, alpha, weight):
    """sunshangquan/logit-standardization-KD's kd_loss(logit_stand=True): torch's std is n - 1."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)

    def z(x):
        return (x - x.mean(-1, keepdims=True)) / (1e-7 + x.std(-1, ddof=1, keepdims=True))

    soft = weight * temperature ** 2 * np.mean(_kl(_log_softmax(z(t) / temperature), _log_softmax(z(s) / temperature)))
    hard = _hard(labels, s)
    return alpha * hard + (1 - alpha) * soft, hard, soft


def _logits(seed, scale, batch=64, classes=10):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, batch)
    if scale == "large":  # up to +-80: the teacher's target far ahead or far behind
        s = rng.uniform(-80, 80, (batch, classes))
        t = rng.uniform(-80, 80, (batch, classes))
    else:
        s, t = rng.normal(0, scale, (batch, classes)), rng.normal(0, scale, (batch, classes))
    return labels, s.astype(np.float32), t.astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 4.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_numpy(scale, temperature):
    labels, s, t = _logits(1, scale)
    for a, b, epoch, warmup in ((1.0, 8.0, 1, 0), (0.5, 2.0, 1, 3), (2.0, 0.0, 5, 3)):
        got = [float(v) for v in dkd_loss(labels, s, t, temperature, 0.3, a, b, epoch, warmup)]
        want = numpy_dkd(labels, s, t, temperature, 0.3, a, b, epoch, warmup)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 4.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_logit_std_matches_numpy(scale, temperature):
    labels, s, t = _logits(2, scale)
    got = [float(v) for v in logit_std_loss(labels, s, t, temperature, 0.1, 10.0)]
    np.testing.assert_allclose(got, numpy_logit_std(labels, s, t, temperature, 0.1, 10.0), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_identity_gives_back_kd(scale, temperature):
    """Zhao et al. 2022, Eq. 4: KL(p_T || p_S) = TCKD + (1 - p_t^T) NCKD per example. So with
    alpha = beta = 1, NCKD weighted by each example's teacher non-target mass gives back KD."""
    labels, s, t = _logits(3, scale)
    tckd, nckd, pt = (v.numpy().astype(np.float64) for v in dkd_terms(labels, s, t, temperature))
    _, _, kd_soft = distillation_loss(labels, s, t, temperature, 0.0)
    rebuilt = temperature ** 2 * np.mean(tckd + (1.0 - pt) * nckd)
    np.testing.assert_allclose(rebuilt, float(kd_soft), rtol=1e-4, atol=1e-5)
    # and unweighted (mdistiller's alpha = beta = 1) it is not KD unless p_t^T is 0
    _, _, dkd11 = dkd_loss(labels, s, t, temperature, 0.0, 1.0, 1.0)
    assert float(dkd11) >= float(kd_soft) - 1e-5
    if scale == 1.0:
        assert float(dkd11) > float(kd_soft) * 1.01


def test_extreme_logits_give_finite_losses_and_gradients():
    rng = np.random.default_rng(4)
    s = tf.Variable(rng.uniform(-1e4, 1e4, (32, 10)).astype(np.float32))
    t = rng.uniform(-1e4, 1e4, (3, 32, 10)).astype(np.float32)  # an ensemble too
    labels = rng.integers(0, 10, 32)
    for loss in (lambda: dkd_loss(labels, s, t, 1.0, 0.5, 1.0, 8.0), lambda: logit_std_loss(labels, s, t, 2.0, 0.5, 9.0)):
        with tf.GradientTape() as tape:
            total, hard, soft = loss()
        assert all(np.isfinite(float(v)) for v in (total, hard, soft)) and float(soft) >= -1e-4
        assert np.all(np.isfinite(tape.gradient(total, s).numpy()))


def test_bfloat16_logits_are_scored_in_float32():
    labels, s, t = _logits(5, 3.0)
    for loss in (lambda x: dkd_loss(labels, x, t, 4.0, 0.5, 1.0, 8.0), lambda x: logit_std_loss(labels, x, t, 2.0, 0.5, 9.0)):
        out = loss(tf.cast(s, tf.bfloat16))
        assert all(v.dtype == tf.float32 for v in out)


def test_standardize_is_a_per_example_z_score_with_n_minus_1():
    x = np.array([[1.0, 2.0, 3.0, 10.0]], np.float32)
    want = (x - x.mean()) / (1e-7 + x.std(ddof=1))
    np.testing.assert_allclose(standardize(x).numpy(), want, rtol=1e-6)
    # invariant to the logits' scale and shift: what makes it "standardization"
    np.testing.assert_allclose(standardize(3 * x + 5).numpy(), standardize(x).numpy(), rtol=1e-5)
