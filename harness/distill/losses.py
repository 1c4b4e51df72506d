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

Every loss here takes one run's tensors (student logits [batch, classes], teacher logits
[batch, classes] or [members, batch, classes], scalar parameters) or a population's (student
logits [K, batch, classes], teacher logits [K, batch, classes] or [K, members, batch, classes],
labels [K, batch], every parameter a scalar or [K]) and returns scalars or [K]: the batch is
always the second-to-last axis of the logits, and a parameter of shape [K] is member k's.
`distill/population.py` trains K students with these same functions.
"""

from __future__ import annotations

import tensorflow as tf


def per_member(value, rank: int):
    """A parameter as it broadcasts against a tensor of `rank`: a scalar as it is, a population's
    [K] reshaped to [K, 1, ..., 1]. Float32."""
    v = tf.cast(value, tf.float32)
    return v if v.shape.rank == 0 else tf.reshape(v, [-1] + [1] * (rank - 1))


def log_soft_targets(teacher_logits, temperature, student_rank: int = 2):
    """log of the (ensemble-averaged) softened teacher distribution, shaped as the student's logits.

    `student_rank`: 2 for one run, 3 for a population; a teacher with one more axis is an ensemble
    whose members are its third-to-last axis ([members, batch, classes], [K, members, batch, classes]).
    """
    t = tf.cast(teacher_logits, tf.float32)  # float32 before the division by T, whatever computed them
    log_p = tf.nn.log_softmax(t / per_member(temperature, t.shape.rank), axis=-1)
    if t.shape.rank == student_rank + 1:  # ensemble: log(mean_m p_m) = logsumexp_m(log p_m) - log M
        members = tf.cast(tf.shape(t)[-3], tf.float32)
        log_p = tf.reduce_logsumexp(log_p, axis=-3) - tf.math.log(members)
    return log_p


def soft_targets(teacher_logits, temperature):
    """softmax(teacher_logits / T), averaged over ensemble members when there are several."""
    return tf.exp(log_soft_targets(teacher_logits, temperature))


def masked_cross_entropy(labels, logits):
    """Mean cross-entropy over the examples whose label is >= 0 (0.0 when there are none).

    `labels`: int [batch] (or [K, batch]), -1 for an unlabeled example; `logits`: float32
    [batch, classes] (or [K, batch, classes]). A scalar (or [K]).
    """
    labeled = labels >= 0
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
    ce = tf.where(labeled, ce, tf.zeros_like(ce))
    count = tf.reduce_sum(tf.cast(labeled, tf.float32), axis=-1)
    return tf.reduce_sum(ce, axis=-1) / tf.maximum(count, 1.0)


def hard_loss(labels, student_logits, masked: bool = False):
    """CE(labels, softmax(student)) averaged over the batch (its labeled examples with `masked`)."""
    if masked:
        return masked_cross_entropy(labels, student_logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits),
                          axis=-1)


def _inputs(labels, student_logits, temperature, alpha):
    """The common casts: student logits float32 (a bfloat16 student's too), labels int32, T and alpha
    float32 shaped to broadcast against the logits."""
    s = tf.cast(student_logits, tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    return labels, s, per_member(temperature, s.shape.rank), tf.cast(alpha, tf.float32)


def _mix(alpha, hard, soft):
    return alpha * hard + (1.0 - alpha) * soft


def distillation_loss(labels, student_logits, teacher_logits, temperature, alpha, masked: bool = False):
    """Return `(total, hard, soft)`, scalars (or [K]): `hard` averaged over the batch (over its
    labeled examples with `masked`, where the label -1 marks an unlabeled one), `soft` over the batch."""
    labels, s, T, alpha = _inputs(labels, student_logits, temperature, alpha)
    hard = hard_loss(labels, s, masked)
    log_p = log_soft_targets(teacher_logits, temperature, s.shape.rank)
    log_q = tf.nn.log_softmax(s / T, axis=-1)
    # KL(p || q) = sum p (log p - log q); p = exp(log_p) underflows to 0 exactly
    # where its contribution does, so no 0 * inf appears.
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    soft = tf.square(tf.cast(temperature, tf.float32)) * tf.reduce_mean(kl, axis=-1)
    return _mix(alpha, hard, soft), hard, soft


def _nontarget_mass(log_p, gt):
    """log of the probability of every class but the target's, [batch]: a logsumexp over the
    non-target entries (the target's set to -inf), exact where 1 - p_target would round to 0."""
    return tf.reduce_logsumexp(tf.where(gt, tf.constant(-float("inf"), tf.float32), log_p), axis=-1)


def dkd_terms(labels, student_logits, teacher_logits, temperature):
    """Per-example `(tckd, nckd, teacher_target_probability)`, each [batch] ([K, batch]) float32, without T^2.

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
    labels, s, T, _ = _inputs(labels, student_logits, temperature, 0.0)
    gt = tf.one_hot(labels, tf.shape(s)[-1], on_value=True, off_value=False)  # [..., batch, classes]
    log_p = log_soft_targets(teacher_logits, temperature, s.shape.rank)
    log_q = tf.nn.log_softmax(s / T, axis=-1)
    log_pt = tf.reduce_sum(tf.where(gt, log_p, 0.0), axis=-1)  # log p_target, [..., batch]
    log_qt = tf.reduce_sum(tf.where(gt, log_q, 0.0), axis=-1)
    log_po, log_qo = _nontarget_mass(log_p, gt), _nontarget_mass(log_q, gt)  # log(1 - p_target)
    tckd = tf.exp(log_pt) * (log_pt - log_qt) + tf.exp(log_po) * (log_po - log_qo)
    log_ph = log_p - log_po[..., None]  # the target entry is garbage, masked out below
    log_qh = log_q - log_qo[..., None]
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
    Scalars (or [K]) float32 whatever the models computed in; `epoch`, `warmup` may be tensors.
    """
    labels, s, _, alpha = _inputs(labels, student_logits, temperature, alpha)
    rank = s.shape.rank - 1  # the per-example terms' rank
    hard = hard_loss(labels, s)
    tckd, nckd, _ = dkd_terms(labels, s, teacher_logits, temperature)
    weighted = per_member(dkd_alpha, rank) * tckd + per_member(dkd_beta, rank) * nckd
    soft = dkd_warmup_factor(epoch, warmup) * tf.square(tf.cast(temperature, tf.float32)) \
        * tf.reduce_mean(weighted, axis=-1)
    return _mix(alpha, hard, soft), hard, soft


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
    labels, s, T, alpha = _inputs(labels, student_logits, temperature, alpha)
    hard = hard_loss(labels, s)
    log_p = log_soft_targets(standardize(teacher_logits), temperature, s.shape.rank)
    log_q = tf.nn.log_softmax(standardize(s) / T, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
    soft = tf.cast(weight, tf.float32) * tf.square(tf.cast(temperature, tf.float32)) * tf.reduce_mean(kl, axis=-1)
    return _mix(alpha, hard, soft), hard, soft
