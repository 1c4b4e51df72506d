"""The distillation losses: the one place their math lives. Hinton, Vinyals and Dean (2015),
`distillation_loss` (method kd, the default), below; Decoupled KD (`dkd_loss`) and logit
standardization (`logit_std_loss`) after it, each returning `(total, hard, soft)` alike, with
total = alpha * hard + (1 - alpha) * soft (docs/methods.md).

    hard  = CE(labels, softmax(student))
    soft  = T^2 * KL(soft_targets || softmax(student / T)),  soft_targets = softmax(teacher / T)
    total = alpha * hard + (1 - alpha) * soft

The T^2 keeps the soft term's gradients the same size whatever the temperature
(they scale as 1/T^2 otherwise). An ensemble teacher gives logits shaped
[members, batch, classes]; its soft targets are the mean of the members'
softened distributions. Everything is computed in log-space, so temperatures
from 1 to 100 and logits up to +-1e4 stay finite, and in float32 whatever
precision the models computed their logits in.

Unlabeled examples (`masked=True`) carry the label -1: they add to the soft
term only. The hard term is then the mean cross-entropy over the batch's
labeled examples alone (its sum over them divided by their count; 0 for a
batch without any), and the soft term stays the mean over every example of
the batch, so

    hard  = sum_{i: y_i >= 0} CE_i / max(1, #{i: y_i >= 0})
    soft  = T^2 * mean_i KL_i                       (all examples, labeled or not)

An unlabeled example's gradient therefore comes from the soft targets alone,
and `alpha` keeps its meaning (the weight of the labeled examples' mean loss).
Without `masked` the hard term is the plain batch mean: every label is a class id.
"""

from __future__ import annotations

import tensorflow as tf


def log_soft_targets(teacher_logits, temperature):
    """log of the (ensemble-averaged) softened teacher distribution, [batch, classes]."""
    t = tf.cast(teacher_logits, tf.float32)  # float32 before the division by T, whatever computed them
    log_p = tf.nn.log_softmax(t / temperature, axis=-1)
    if t.shape.rank == 3:  # ensemble: log(mean_m p_m) = logsumexp_m(log p_m) - log M
        members = tf.cast(tf.shape(t)[0], tf.float32)
        log_p = tf.reduce_logsumexp(log_p, axis=0) - tf.math.log(members)
    return log_p


def soft_targets(teacher_logits, temperature):
    """softmax(teacher_logits / T), averaged over ensemble members when there are several."""
    return tf.exp(log_soft_targets(teacher_logits, temperature))


def masked_cross_entropy(labels, logits):
    """Mean cross-entropy over the examples whose label is >= 0 (0.0 when there are none).

    `labels`: int [batch], -1 for an unlabeled example; `logits`: float32 [batch, classes].
    """
    labeled = labels >= 0
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
    ce = tf.where(labeled, ce, tf.zeros_like(ce))
    count = tf.reduce_sum(tf.cast(labeled, tf.float32))
    return tf.reduce_sum(ce) / tf.maximum(count, 1.0)


def distillation_loss(labels, student_logits, teacher_logits, temperature, alpha, masked: bool = False):
    """Return `(total, hard, soft)`, scalars: `hard` averaged over the batch (over its labeled
    examples with `masked`, where the label -1 marks an unlabeled one), `soft` over the batch."""
    s = tf.cast(student_logits, tf.float32)  # a bfloat16 student's too: the loss is float32
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    temperature = tf.cast(temperature, tf.float32)
    alpha = tf.cast(alpha, tf.float32)

    if masked:
        hard = masked_cross_entropy(labels, s)
    else:
        hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=s))
    log_p = log_soft_targets(teacher_logits, temperature)
    log_q = tf.nn.log_softmax(s / temperature, axis=-1)
    # KL(p || q) = sum p (log p - log q); p = exp(log_p) underflows to 0 exactly
    # where its contribution does, so no 0 * inf appears.
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    soft = tf.square(temperature) * tf.reduce_mean(kl)
    total = alpha * hard + (1.0 - alpha) * soft
    return total, hard, soft


def _nontarget_mass(log_p, gt):
    """log of the probability of every class but the target's, [batch]: a logsumexp over the
    non-target entries (the target's set to -inf), exact where 1 - p_target would round to 0."""
    return tf.reduce_logsumexp(tf.where(gt, tf.constant(-float("inf"), tf.float32), log_p), axis=-1)


def dkd_terms(labels, student_logits, teacher_logits, temperature):
    """Per-example `(tckd, nckd, teacher_target_probability)`, each [batch] float32, without T^2.

    With b = [p_t, 1 - p_t] the binary target/non-target split of a softened
    distribution and p^ = p_j / (1 - p_t) over the non-target classes j != t
    (Zhao et al. 2022, Eq. 1-2):

        tckd = KL(b^teacher || b^student),  nckd = KL(p^teacher || p^student)

    so that KL(p^teacher || p^student) over all classes = tckd + (1 - p_t^teacher) * nckd
    (their Eq. 4). Computed from log-probabilities: log(1 - p_t) is a logsumexp over
    the non-target classes and log p^ = log p - log(1 - p_t), so it is exact where
    mdistiller's `- 1000 * gt_mask` shift and `log(cat_mask(...))` would lose
    precision or overflow (logits / T beyond about 1e3). An ensemble teacher's p is
    the mean of its members' softened distributions, as in `distillation_loss`.
    """
    s = tf.cast(student_logits, tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    temperature = tf.cast(temperature, tf.float32)
    gt = tf.one_hot(labels, tf.shape(s)[-1], on_value=True, off_value=False)  # [batch, classes]
    log_p = log_soft_targets(teacher_logits, temperature)
    log_q = tf.nn.log_softmax(s / temperature, axis=-1)
    log_pt = tf.reduce_sum(tf.where(gt, log_p, 0.0), axis=-1)  # log p_target, [batch]
    log_qt = tf.reduce_sum(tf.where(gt, log_q, 0.0), axis=-1)
    log_po, log_qo = _nontarget_mass(log_p, gt), _nontarget_mass(log_q, gt)  # log(1 - p_target)
    tckd = tf.exp(log_pt) * (log_pt - log_qt) + tf.exp(log_po) * (log_po - log_qo)
    log_ph = log_p - log_po[:, None]  # the target entry is garbage, masked out below
    log_qh = log_q - log_qo[:, None]
    nckd = tf.reduce_sum(tf.where(gt, 0.0, tf.exp(log_ph) * (log_ph - log_qh)), axis=-1)
    return tckd, nckd, tf.exp(log_pt)


def dkd_warmup_factor(epoch, warmup):
    """min(epoch / warmup, 1) with `epoch` counted from 1 (mdistiller's DKD); 1 when warmup <= 0."""
    epoch, warmup = tf.cast(epoch, tf.float32), tf.cast(warmup, tf.float32)
    return tf.where(warmup > 0, tf.minimum(epoch / tf.maximum(warmup, 1.0), 1.0), 1.0)


def dkd_loss(labels, student_logits, teacher_logits, temperature, alpha, dkd_alpha, dkd_beta,
             epoch=1, warmup=0):
    """Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022), `(total, hard, soft)`.

        soft  = min(epoch / warmup, 1) * T^2 * mean_batch(dkd_alpha * tckd + dkd_beta * nckd)
        total = alpha * hard + (1 - alpha) * soft,   hard = CE(labels, softmax(student))

    tckd, nckd: `dkd_terms`. As mdistiller's `DKD.forward_train`
    (mdistiller/distillers/DKD.py): both terms carry T^2, the warm-up scales the
    DKD term alone, linearly over the first `warmup` epochs (epoch counted from 1;
    `warmup` 0: no warm-up). mdistiller weighs CE by CE_WEIGHT (1.0) and the DKD
    term by 1; here `alpha` weighs the hard labels and 1 - alpha the DKD term, as
    for every method of the harness, so mdistiller's (CE_WEIGHT 1, ALPHA a, BETA b)
    is alpha = 0.5, dkd_alpha = a, dkd_beta = b up to a factor 2 on the whole loss.
    Scalars float32 whatever the models computed in; `epoch`, `warmup` may be tensors.
    """
    s = tf.cast(student_logits, tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    temperature, alpha = tf.cast(temperature, tf.float32), tf.cast(alpha, tf.float32)
    hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=s))
    tckd, nckd, _ = dkd_terms(labels, s, teacher_logits, temperature)
    weighted = tf.cast(dkd_alpha, tf.float32) * tckd + tf.cast(dkd_beta, tf.float32) * nckd
    soft = dkd_warmup_factor(epoch, warmup) * tf.square(temperature) * tf.reduce_mean(weighted)
    total = alpha * hard + (1.0 - alpha) * soft
    return total, hard, soft


def standardize(logits, eps: float = 1e-7):
    """Z-score over the class axis: (z - mean) / (eps + std), std with Bessel's correction
    (n - 1), as the reference's `normalize` (torch's `std`, eps 1e-7 added to it). Float32."""
    z = tf.cast(logits, tf.float32)
    n = tf.cast(tf.shape(z)[-1], tf.float32)
    mean = tf.reduce_mean(z, axis=-1, keepdims=True)
    std = tf.sqrt(tf.reduce_sum(tf.square(z - mean), axis=-1, keepdims=True) / (n - 1.0))
    return (z - mean) / (eps + std)


def logit_std_loss(labels, student_logits, teacher_logits, temperature, alpha, weight):
    """KD with logit standardization (Sun, Ren, Li, Wang, Cao; CVPR 2024), `(total, hard, soft)`.

        soft  = weight * T^2 * KL(softmax(Z(teacher) / T) || softmax(Z(student) / T))
        total = alpha * hard + (1 - alpha) * soft

    Z: `standardize`, per example (per member for an ensemble, whose softened
    distributions are then averaged); T is the paper's base temperature. As
    `kd_loss(..., logit_stand=True)` of sunshangquan/logit-standardization-KD
    (mdistiller/distillers/KD.py), weighted CE_WEIGHT * CE + KD_WEIGHT * kd_loss: their
    CIFAR-100 flags (CE 0.1, KD weight 9, base temperature 2) are alpha = 0.1,
    weight = 10, temperature = 2 here. Float32 whatever precision computed the logits.
    """
    s = tf.cast(student_logits, tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    temperature, alpha = tf.cast(temperature, tf.float32), tf.cast(alpha, tf.float32)
    hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=s))
    log_p = log_soft_targets(standardize(teacher_logits), temperature)
    log_q = tf.nn.log_softmax(standardize(s) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    soft = tf.cast(weight, tf.float32) * tf.square(temperature) * tf.reduce_mean(kl)
    total = alpha * hard + (1.0 - alpha) * soft
    return total, hard, soft
