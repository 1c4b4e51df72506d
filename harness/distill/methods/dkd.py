"""dkd: Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022).

Section `distillation.dkd: {alpha, beta, warmup}` (the weights of TCKD and NCKD, and epochs of
linear warm-up of the DKD term); `search.dkd` searches them (`alpha`, `beta`: float ranges;
`warmup`: choices). The math: `distill/losses.py:dkd_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.distill.methods.base import DistillMethod, EpochSpace, Fail, FloatRange, register


@dataclass(frozen=True)
class DKDConfig:
    """Decoupled KD's own parameters (Zhao et al. 2022; distill/losses.py `dkd_loss`)."""
    alpha: float = 1.0  # weight of TCKD, the target-class term (the paper's alpha)
    beta: float = 8.0  # weight of NCKD, the non-target term (the paper's beta; mdistiller: 2, 6 or 8)
    warmup: int = 0  # epochs of linear warm-up of the DKD term: min(epoch / warmup, 1), epoch from 1


@dataclass(frozen=True)
class DKDSpace:
    """DKD's parameters as search dimensions, suggested only in trials whose method is dkd
    (null: distillation.dkd's value)."""
    alpha: FloatRange | None = None
    beta: FloatRange | None = None
    warmup: EpochSpace | None = None  # choices of warm-up epochs


@register
class DKD(DistillMethod):
    name = "dkd"
    Config = DKDConfig
    Space = DKDSpace
    short = {"alpha": "a", "beta": "b", "warmup": "warmup"}
    uses_epoch = True

    @classmethod
    def check(cls, section, where: str, fail: Fail) -> None:
        if section.alpha < 0 or section.beta < 0:
            fail(where, f"weights alpha and beta must be 0 or more (got {section.alpha:g}, {section.beta:g})")
        if section.warmup < 0:
            fail(f"{where}.warmup", "must be 0 or more epochs")

    @classmethod
    def check_space(cls, space, where: str, fail: Fail) -> None:
        super().check_space(space, where, fail)
        if space.warmup and any(w < 0 for w in space.warmup.choices):
            fail(f"{where}.warmup.choices", "every warm-up must be 0 or more epochs")

    @classmethod
    def loss(cls, labels, student_logits, teacher_logits, temperature, alpha, own: dict, epoch=None,
             masked: bool = False):
        from harness.distill.losses import dkd_loss

        return dkd_loss(labels, student_logits, teacher_logits, temperature, alpha, own["dkd_alpha"],
                        own["dkd_beta"], 1.0 if epoch is None else epoch, own["dkd_warmup"])
