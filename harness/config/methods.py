"""The `distillation` section (teacher mode, method) and each method's own sections: DKD's and logit
standardization's parameters, and their search dimensions (see distill/methods.py), with their checks."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.ranges import EpochSpace, FloatRange

METHODS = ("kd", "dkd", "logit_std")  # distillation losses: see distill/losses.py, distill/methods.py


@dataclass(frozen=True)
class DKDConfig:
    """Decoupled KD's own parameters (Zhao et al. 2022; distill/losses.py `dkd_loss`)."""
    alpha: float = 1.0  # weight of TCKD, the target-class term (the paper's alpha)
    beta: float = 8.0  # weight of NCKD, the non-target term (the paper's beta; mdistiller: 2, 6 or 8)
    warmup: int = 0  # epochs of linear warm-up of the DKD term: min(epoch / warmup, 1), epoch from 1


@dataclass(frozen=True)
class LogitStdConfig:
    """Logit standardization's own parameter (Sun et al. 2024; distill/losses.py `logit_std_loss`);
    its base temperature is `temperature`."""
    weight: float = 10.0  # multiplies the soft term, (1 - alpha) * weight in all: alpha 0.1 -> the paper's 9


@dataclass(frozen=True)
class DistillationConfig:
    # cached: the teacher's logits over the (unaugmented) transfer set, computed once.
    # online: the teacher runs inside each step on the student's own (augmented) batch,
    # the "consistent" teacher of Beyer et al. 2022; it costs a teacher forward pass per step.
    teacher: str = "cached"
    method: str = "kd"  # kd | dkd | logit_std (search.method searches it instead)
    dkd: DKDConfig | None = None  # dkd only (null: DKDConfig's defaults)
    logit_std: LogitStdConfig | None = None  # logit_std only


@dataclass(frozen=True)
class MethodSpace:
    choices: list[str]


@dataclass(frozen=True)
class DKDSpace:
    """DKD's parameters as search dimensions, suggested only in trials whose method is dkd
    (null: distillation.dkd's value)."""
    alpha: FloatRange | None = None
    beta: FloatRange | None = None
    warmup: EpochSpace | None = None  # choices of warm-up epochs


@dataclass(frozen=True)
class LogitStdSpace:
    weight: FloatRange | None = None  # suggested only in logit_std trials (null: distillation.logit_std's)


def check_distillation(cfg, fail) -> None:
    """How the teacher is consulted: cached logits, or online (needed by an augmented student)."""
    if cfg.distillation.teacher not in ("cached", "online"):
        fail("distillation.teacher", f"unknown mode {cfg.distillation.teacher!r}; allowed: cached, online")
    if cfg.student.augment.jitter and cfg.distillation.teacher == "cached":
        fail("distillation.teacher", "student.augment needs `teacher: online`: the cached logits are of "
                                     "unaugmented images, so they would not match the student's batches")


def _check_method_params(where: str, method: str | None, dkd, logit_std, fail, whose: str) -> None:
    """A method's own section only under that method; weights not negative."""
    for name, section in (("dkd", dkd), ("logit_std", logit_std)):
        if section is not None and method != name:
            fail(f"{where}.{name}", f"parameters of method {name}, but {whose} method is {method or 'not set'}"
                                    f" (allowed here: {method or 'none'}'s own)")
    if dkd is not None:
        if dkd.alpha < 0 or dkd.beta < 0:
            fail(f"{where}.dkd", f"weights alpha and beta must be 0 or more (got {dkd.alpha:g}, {dkd.beta:g})")
        if dkd.warmup < 0:
            fail(f"{where}.dkd.warmup", "must be 0 or more epochs")
    if logit_std is not None and logit_std.weight < 0:
        fail(f"{where}.logit_std.weight", f"must be 0 or more (got {logit_std.weight:g})")


def check_methods(cfg, fail) -> None:
    """distillation.method, search.method and confirm.arms' methods (see distill/methods.py)."""
    d, sp = cfg.distillation, cfg.search
    if d.method not in METHODS:
        fail("distillation.method", f"unknown method {d.method!r}; allowed: {', '.join(METHODS)}")
    if sp.method is not None:
        bad = [m for m in sp.method.choices if m not in METHODS]
        if bad or len(set(sp.method.choices)) != len(sp.method.choices):
            fail("search.method.choices", f"distinct methods among {', '.join(METHODS)} (got {sp.method.choices})")
    methods = cfg.methods
    for name in ("dkd", "logit_std"):
        for where in ("distillation", "search"):
            if getattr(getattr(cfg, where), name) is not None and name not in methods:
                fail(f"{where}.{name}", f"parameters of method {name}, but the study's method is "
                                        f"{' or '.join(methods)} (search.method offers no {name})")
    _check_method_params("distillation", "dkd" if d.dkd else "logit_std" if d.logit_std else None,
                         d.dkd, d.logit_std, fail, "the")
    for where, r in (("search.dkd.alpha", sp.dkd and sp.dkd.alpha), ("search.dkd.beta", sp.dkd and sp.dkd.beta),
                     ("search.logit_std.weight", sp.logit_std and sp.logit_std.weight)):
        if r and (r.low < 0 or r.low > r.high or (r.log and r.low <= 0)):
            fail(where, "needs 0 <= low <= high (0 < low with log: true): a weight is never negative")
    if sp.dkd and sp.dkd.warmup and any(w < 0 for w in sp.dkd.warmup.choices):
        fail("search.dkd.warmup.choices", "every warm-up must be 0 or more epochs")
    for i, arm in enumerate(cfg.confirm.arms or []):
        where = f"confirm.arms[{i}]"
        if arm.method is not None and arm.method not in METHODS:
            fail(f"{where}.method", f"unknown method {arm.method!r}; allowed: {', '.join(METHODS)}")
        _check_method_params(where, arm.method, arm.dkd, arm.logit_std, fail, "this arm's")
        if arm.temperature is not None and arm.temperature <= 0:
            fail(f"{where}.temperature", "must be greater than 0")
        if arm.alpha is not None and not 0 <= arm.alpha <= 1:
            fail(f"{where}.alpha", "alpha must lie in [0, 1]")
        if arm.alpha not in (None, 0.0) and not cfg.transfer.labels:
            fail(f"{where}.alpha", "transfer.labels: false trains on soft targets only (alpha is 0)")
