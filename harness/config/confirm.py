"""The `confirm` section: seeds, arms (each with its own teacher mode, jitter, transfer set, epochs
and method), the reference arm, training together; with its checks."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.data import TransferConfig, check_transfer
from harness.config.methods import TEACHER_MODES, with_method_sections


@dataclass(frozen=True)
class _ArmConfig:
    """One distilled arm of the confirmation: how the teacher is consulted and how the
    student's batches are jittered. Its scratch twin sees the same jittered batches."""
    name: str
    teacher: str = "cached"  # cached | online | views (see DistillationConfig; views: distillation.views)
    jitter: int = 0
    # The arm's own transfer set and epochs (null: the file's): e.g. 1%, 3% and all of the data in
    # one confirmation, each arm with its own scratch twin on the same data.
    transfer: TransferConfig | None = None
    epochs: int | None = None
    # The arm's distillation method (null: the trial's) and its parameters (null: the trial's when it
    # has the same method, else distillation's): e.g. one configuration under kd, dkd and logit_std.
    # Then `<method>`: that method's own section (config/methods.py adds one field per method).
    method: str | None = None
    temperature: float | None = None
    alpha: float | None = None


ArmConfig = with_method_sections(_ArmConfig, "Config")


@dataclass(frozen=True)
class ConfirmConfig:
    """After the search: the chosen configurations again over fresh seeds, each paired with
    its scratch twin, so gains come with confidence intervals. 0 turns it off."""
    seeds: int = 5
    # Several distilled arms per configuration (e.g. cached vs consistent online), compared
    # with each other seed by seed too; null: one arm, the file's distillation and augment.
    arms: list[ArmConfig] | None = None
    # An arm whose scratch twin every arm's students are also compared with, paired by seed
    # (e.g. the full-data scratch student of a few-examples study).
    reference: str | None = None
    # Train the seeds of one configuration together, distilled and scratch, as one population
    # (stacked weights, see distill/population.py); false: one run after another.
    together: bool = True


def check_confirm(cfg, fail) -> None:
    sp = cfg.search
    if cfg.confirm.seeds < 0 or cfg.confirm.seeds == 1:
        fail("confirm.seeds", "must be 0 (off) or at least 2 (an interval needs two seeds)")
    names = set()
    for i, arm in enumerate(cfg.confirm.arms or []):
        where = f"confirm.arms[{i}]"
        if not arm.name.strip() or arm.name in names:
            fail(f"{where}.name", f"must be a unique, non-empty name (got {arm.name!r})")
        names.add(arm.name)
        if arm.teacher not in TEACHER_MODES:
            fail(f"{where}.teacher", f"unknown mode {arm.teacher!r}; allowed: {', '.join(TEACHER_MODES)}")
        if arm.jitter < 0:
            fail(f"{where}.jitter", "must be 0 or more pixels")
        if arm.jitter and arm.teacher == "cached":
            fail(f"{where}.teacher", "jitter needs `teacher: online`: the cached logits are of unaugmented "
                                     "images, so they would not match the student's batches")
        if arm.jitter and arm.teacher == "views":
            fail(f"{where}.jitter", "a views arm augments by its views (distillation.views.shift); a jitter "
                                    "on top would not match the views' cached logits")
        if arm.transfer is not None:
            check_transfer(arm.transfer, f"{where}.transfer", fail)
            if arm.transfer.labels != cfg.transfer.labels:
                fail(f"{where}.transfer.labels", "must equal transfer.labels: the arm's students take the "
                                                 "search's alpha")
        if arm.epochs is not None and (arm.epochs < 1 or sp.epochs is not None):
            fail(f"{where}.epochs", "must be at least 1, and only when search.epochs is null")
    if cfg.confirm.reference is not None and cfg.confirm.reference not in names:
        fail("confirm.reference", f"names no arm in confirm.arms (got {cfg.confirm.reference!r})")
