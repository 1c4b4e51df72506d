"""kd: Hinton, Vinyals and Dean (2015), the default method; no parameters of its own.

    total = alpha * CE(labels, softmax(student)) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The math: `distill/losses.py:distillation_loss`. The only method that takes unlabeled transfer
examples (`masked`), and whose distilled confirmation runs train as one population.
"""

from __future__ import annotations

from harness.distill.methods.base import DistillMethod, register


@register
class KD(DistillMethod):
    name = "kd"
    masked = True
    stacks = True

    @classmethod
    def loss(cls, labels, student_logits, teacher_logits, temperature, alpha, own: dict, epoch=None,
             masked: bool = False):
        from harness.distill.losses import distillation_loss

        return distillation_loss(labels, student_logits, teacher_logits, temperature, alpha, masked=masked)
