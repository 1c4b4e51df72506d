"""`Method`: which distillation loss a student trains with, and that loss's parameters.

kd (Hinton et al. 2015), dkd (Zhao et al. 2022) and logit_std (Sun et al. 2024); the
formulas are in `losses.py`. Every method weighs the hard labels by `alpha` and its
distillation term by `1 - alpha`, and uses `temperature` (logit_std's base
temperature). The rest belongs to one method: `dkd_alpha`, `dkd_beta` (the
weights of TCKD and NCKD), `dkd_warmup` (epochs of linear warm-up of the DKD
term) for dkd; `logit_std_weight` (the KD weight) for logit_std.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.config import METHODS, DKDConfig, LogitStdConfig

# The parameters each method has beyond temperature and alpha (Optuna, MLflow and TrialRecord names).
OWN = {"kd": (), "dkd": ("dkd_alpha", "dkd_beta", "dkd_warmup"), "logit_std": ("logit_std_weight",)}


@dataclass(frozen=True)
class Method:
    name: str = "kd"
    temperature: float = 4.0
    alpha: float = 0.1
    dkd_alpha: float = DKDConfig.alpha
    dkd_beta: float = DKDConfig.beta
    dkd_warmup: int = DKDConfig.warmup
    logit_std_weight: float = LogitStdConfig.weight

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"unknown distillation method {self.name!r}; allowed: {', '.join(METHODS)}")

    def own(self) -> dict:
        """The method's own parameters (none for kd)."""
        return {k: getattr(self, k) for k in OWN[self.name]}

    def params(self) -> dict:
        """What an MLflow run logs about its loss: the method and its own parameters (nothing for
        kd, whose runs log as before)."""
        return {} if self.name == "kd" else {"method": self.name, **self.own()}

    def label(self) -> str:
        """One short line: `dkd(a=1, b=8, warmup=1)`."""
        short = {"dkd_alpha": "a", "dkd_beta": "b", "dkd_warmup": "warmup", "logit_std_weight": "w"}
        return self.name + (f"({', '.join(f'{short[k]}={v:.3g}' for k, v in self.own().items())})" if self.own() else "")

    @classmethod
    def of(cls, record, **overrides) -> Method:
        """From anything with `temperature`, `alpha`, and (None where unknown) `method` and the
        methods' own fields (a `TrialRecord`); `overrides` on top (None: not overridden)."""
        fields = {"name": getattr(record, "method", None) or "kd", "temperature": record.temperature,
                  "alpha": record.alpha}
        for k in ("dkd_alpha", "dkd_beta", "dkd_warmup", "logit_std_weight"):
            v = getattr(record, k, None)
            if v is not None:
                fields[k] = v
        fields.update({k: v for k, v in overrides.items() if v is not None})
        if fields.get("dkd_warmup") is not None:
            fields["dkd_warmup"] = int(fields["dkd_warmup"])
        return cls(**fields)


def for_arm(method: Method, arm, distillation) -> Method:
    """A trial's loss under a confirmation arm (`config.ArmConfig`, or None: the trial's own).

    The arm's `method` (else the trial's), its `temperature` and `alpha` (else the trial's), and
    its method's own parameters: the arm's section, else the trial's when the trial has that
    method, else `distillation`'s (a `DistillationConfig`), else the defaults.
    """
    if arm is None:
        return method
    name = arm.method or method.name
    if name != method.name:
        d, s = distillation.dkd or DKDConfig(), distillation.logit_std or LogitStdConfig()
        method = Method(name, method.temperature, method.alpha, d.alpha, d.beta, d.warmup, s.weight)
    over = {"temperature": arm.temperature, "alpha": arm.alpha}
    if arm.dkd is not None:
        over.update(dkd_alpha=arm.dkd.alpha, dkd_beta=arm.dkd.beta, dkd_warmup=arm.dkd.warmup)
    if arm.logit_std is not None:
        over["logit_std_weight"] = arm.logit_std.weight
    return dataclasses.replace(method, **{k: v for k, v in over.items() if v is not None})
