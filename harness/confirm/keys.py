"""Where a confirmation run is kept: its key (everything that determines it) and its JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from harness import files
from harness.distill.methods import Method
from harness.record import TrialRecord
from harness.training import depth, twin
from harness.training.context import Context
from harness.training.run import recipe_of


def key(ctx: Context, r: TrialRecord, seed: int, m: Method) -> str:
    """What determines a confirmation run: its twin's key (data digest, student, recipe, width, seed,
    teacher; trained together or not; the trial's depth when searched), the teacher's key and mode,
    the method's T and alpha (and, for another method than kd, its name and own parameters), and the
    unlabeled images' digest when there are some. A field at its default is left out, so a kd run's
    key does not depend on the fields other methods and unlabeled images add."""
    loss = m.key_fields()  # {} for kd
    cfg = depth.at_depth(ctx.cfg, r.depth)  # a searched depth is the student's (training/depth.py)
    what = {"twin": twin.key(cfg, r.width, seed, recipe_of(ctx, r), ctx.together(), data=ctx.splits.digest),
            "teacher": ctx.teacher.key, "mode": ctx.cfg.distillation.teacher, "temperature": m.temperature,
            "alpha": m.alpha, **loss, **ctx.unlabeled_key}
    return files.digest(json.dumps(what, sort_keys=True))


def target(ctx: Context, r: TrialRecord, seed: int, m: Method) -> Path:
    return ctx.ws.workdir / "confirm" / f"{key(ctx, r, seed, m)}.json"
