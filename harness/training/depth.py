"""The student's depth as a search dimension (`search.depth: {choices: [...]}`), and the checks a
compact family needs before anything is written (a training concept: the search and the
confirmation both train in these variants).

A trial that suggests a depth trains in a variant of the process's `Context` whose study has
`student.depth` set to it. Every cache key that holds the student section (scratch twins,
confirmation runs: `training/twin.py`, `confirm/keys.py`) then holds the depth too, so runs of
two depths never share an entry; compiled models are per context. The variants share the clock and
the traced forward passes; their fit time and FLOPs are added back to the parent by `settle`.
"""

from __future__ import annotations

import dataclasses

from harness.config import ConfigError, StudyConfig
from harness.distill import families
from harness.training.context import Context


def choices(cfg: StudyConfig) -> list[int]:
    """The depths a trial may train: search.depth's choices, or student.depth."""
    return list(cfg.search.depth.choices) if cfg.search.depth is not None else [cfg.student.depth]


def at_depth(cfg: StudyConfig, depth: int | None) -> StudyConfig:
    """The study with `student.depth` set to `depth` (None: as it is)."""
    if depth is None or depth == cfg.student.depth:
        return cfg
    return dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, depth=int(depth)))


def context(ctx: Context, depth: int | None) -> Context:
    """The context whose students have `depth` (None or the file's own: `ctx` itself), built once per
    process and depth."""
    cfg = at_depth(ctx.cfg, depth)
    if cfg is ctx.cfg:
        return ctx
    variants = ctx.__dict__.setdefault("_depth_variants", {})
    if depth not in variants:
        variants[depth] = Context(cfg, ctx.ws, ctx.splits, ctx.teacher, ctx.experiment_id, ctx.parent_run_id,
                                  forward=ctx.forward, clock=ctx.clock)
    return variants[depth]


def settle(parent: Context) -> None:
    """Move the variants' fit seconds and training FLOPs onto `parent` (the figures a study reports)."""
    for v in parent.__dict__.get("_depth_variants", {}).values():
        parent.fit_seconds += v.fit_seconds
        parent.train_flops += v.train_flops
        v.fit_seconds = v.train_flops = 0.0


def check(cfg: StudyConfig, image_shape) -> None:
    """Before anything is written: a MobileNetV3Small student needs 1 or 3 channels (ConfigError)."""
    if cfg.student.builder is None and cfg.student.family == "mobilenet_v3_small":
        problem = families.mobilenet_input_problem(image_shape)
        if problem:
            raise ConfigError(cfg.source, "student.family", problem)
