"""logit_std: KD with logit standardization (Sun, Ren, Li, Wang, Cao; CVPR 2024).

Section `distillation.logit_std: {weight}` (multiplies the soft term); `search.logit_std.weight`
searches it. `temperature` is the paper's base temperature. The math:
`distill/losses.py:logit_std_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.distill.methods.base import DistillMethod, Fail, FloatRange, register


@dataclass(frozen=True)
class LogitStdConfig:
    """Logit standardization's own parameter (Sun et al. 2024; distill/losses.py `logit_std_loss`);
    its base temperature is `temperature`."""
    weight: float = 10.0  # multiplies the soft term, (1 - alpha) * weight in all: alpha 0.1 -> the paper's 9


@dataclass(frozen=True)
class LogitStdSpace:
    weight: FloatRange | None = None  # suggested only in logit_std trials (null: distillation.logit_std's)


@register
class LogitStd(DistillMethod):
    name = "logit_std"
    Config = LogitStdConfig
    Space = LogitStdSpace
    short = {"weight": "w"}

    @classmethod
    def check(cls, section, where: str, fail: Fail) -> None:
        if section.weight < 0:
            fail(f"{where}.weight", f"must be 0 or more (got {section.weight:g})")

    @classmethod
    def loss(cls, labels, student_logits, teacher_logits, temperature, alpha, own: dict, epoch=None,
             masked: bool = False):
        from harness.distill.losses import logit_std_loss

        return logit_std_loss(labels, student_logits, teacher_logits, temperature, alpha, own["logit_std_weight"])
