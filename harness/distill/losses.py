"""The distillation loss of Hinton, Vinyals and Dean (2015): the one place its math lives.

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
Without `masked` the hard term is the plain batch mean, computed as before.
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
