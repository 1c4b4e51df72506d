"""The scratch twin: the same student trained from scratch on hard labels alone.

Every distillation gain is measured against it, so it must differ from the
distilled student in the loss alone: same width, seed (initial weights and
batch order), epochs and recipe. It is trained once per key (everything that
determines it, the teacher included since its fidelity is measured against
that teacher) through the one training path (`run.train_run`) and kept as a
small JSON file under `baselines/` (the folder's name is part of every stored
study's layout); plots and the report ask this module for those paths instead
of rebuilding them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import keras
import mlflow
import tensorflow as tf
from mlflow.tracking import MlflowClient

from harness import files
from harness.config import StudyConfig
from harness.distill import builder, precision
from harness.distill.guard import Diverged
from harness.distill.recipe import Recipe
from harness.teacher.trained import cache_key as teacher_key
from harness.training.context import Context
from harness.training.run import RunResult, RunSpec, train_run

log = logging.getLogger(__name__)


class TwinDiverged(Diverged):
    """A scratch twin whose training loss or scores are not finite: never cached."""


def check_finite(result: dict, losses: list[float]) -> None:
    """Raise `TwinDiverged` naming the first non-finite figure of a twin (its last training loss, or
    a number in `result`), so that a NaN-trained twin is never written (its JSON would hold NaN)."""
    figures = {"training loss": losses[-1] if losses else float("nan"),
               **{k: v for k, v in result.items() if isinstance(v, float)}}
    bad = [k for k, v in figures.items() if not math.isfinite(v)]
    if bad:
        raise TwinDiverged(f"scratch twin w={result.get('width')} seed={result.get('seed')}: "
                           f"{bad[0]} is {figures[bad[0]]} (not finite); it is not cached")


def key(cfg: StudyConfig, width: int, seed: int | None = None, recipe: Recipe | None = None,
        together: bool = False, *, data: str) -> str:
    """The twin's key: a hash of the data's digest (`Splits.digest`), the student and training
    sections, the recipe, width, seed, the teacher's key, the library versions and the precision;
    under `teacher: views`, the views' spec (the twin trains on them).
    `together`: trained in a population (the confirmation's), equal to a lone run to float
    tolerance but not bit for bit, so kept apart."""
    recipe = recipe or Recipe.of(cfg.training)
    # The precision enters as resolved, and not at all for float32: a float32 key does not depend on the field.
    training = {k: v for k, v in dataclasses.asdict(cfg.training).items() if k != "precision"}
    what = {"data": data, "student": cfg.student.key_dict(),
            "training": training, "recipe": recipe.to_dict(), "width": width,
            "seed": cfg.seed if seed is None else seed, "teacher": teacher_key(cfg, data),
            "versions": [tf.__version__, keras.__version__], **precision.key_part(precision.resolved(cfg))}
    # The twin's own examples (absent when all, so the whole set keys as if there were no field).
    # Not `labels`: a twin always learns from hard labels, so a soft-targets-only study shares the
    # twins of its data. Nor the unlabeled images: a twin never sees them, so a study with them
    # shares the twins of one without.
    examples = {"fraction": cfg.transfer.fraction, "omit_classes": cfg.transfer.omit_classes}
    if examples != {"fraction": 1.0, "omit_classes": None}:
        what["transfer"] = examples
    if cfg.student.builder is not None:  # the user's function, by name and source file's SHA-256
        what["student"]["builder"] = builder.identity(cfg.student.builder, cfg.source)
    if together:
        what["population"] = True
    if cfg.distillation.teacher == "views":  # the twin sees the same views as its distilled student
        what["views"] = dataclasses.asdict(cfg.distillation.view_spec)
    return files.digest(json.dumps(what, sort_keys=True))


def path(workdir: Path, cfg: StudyConfig, width: int, seed: int | None = None,
         recipe: Recipe | None = None, together: bool = False, *, data: str) -> Path:
    return Path(workdir) / "baselines" / f"{key(cfg, width, seed, recipe, together, data=data)}.json"


def load(workdir: Path, cfg: StudyConfig, widths, seed: int | None = None, *, data: str) -> list[RunResult]:
    """The twins already trained for these widths (with the file's own recipe) on the data of
    digest `data`, by width."""
    return [RunResult.from_dict(json.loads(p.read_text())) for w in sorted(set(widths))
            if (p := path(workdir, cfg, w, seed, data=data)).exists()]


def train_or_load(ctx: Context, width: int, seed: int | None = None, recipe: Recipe | None = None,
                  role: str = "twin", together: bool = False) -> RunResult:
    """The student at this width, seed and recipe trained from scratch: once per key, shared by
    every trial and confirmation run that pairs with it. `role` tags its MLflow run; `together`:
    the run was trained in a population (`ctx.pretrained` holds it).

    Raises `TwinDiverged` when its loss or a score is not finite (then nothing is written)."""
    cfg = ctx.cfg
    seed = cfg.seed if seed is None else seed
    recipe = recipe or Recipe.of(cfg.training)
    target = path(ctx.ws.workdir, cfg, width, seed, recipe, together, data=ctx.splits.digest)
    with files.locked(target.with_suffix(".lock")):
        if target.exists():
            try:
                result = RunResult.from_dict(json.loads(target.read_text()))
                _check_teacher(ctx, result.width, result.val_accuracy)
                return result
            except json.JSONDecodeError:
                log.warning("scratch twin %s is damaged; training it again", target)
        spec = RunSpec(role, f"{role}-w{width}-s{seed}", width, seed, recipe,
                       params={"width": width, "seed": seed, "family": cfg.student.builder or cfg.student.family,
                               "depth": cfg.student.depth, "precision": ctx.precision, **recipe.to_dict()},
                       tags={"width": str(width), "seed": str(seed), "harness.arm": "scratch"},
                       every_epoch=False, test=True, together=together)
        with ctx.clock.part("mlflow"):
            run = spec.start(ctx)
        with run:
            try:
                result = train_run(ctx, spec)
            except Diverged as e:
                raise TwinDiverged(f"scratch twin w={width} seed={seed}: {e}; it is not cached") from None
            check_finite(result.to_dict(), [float(v) for v in result.history["loss"]])
            if role == "confirm":  # kept, so a twin better than its distilled student can be registered
                with ctx.clock.part("saving"), files.replacing(target.with_suffix(".keras"), suffix=".keras") as tmp:
                    result.student.save(tmp)
                result.model_path = str(target.with_suffix(".keras"))
            with ctx.clock.part("mlflow"):
                mlflow.end_run()  # here, to be timed; the `with` then finds no run to end
        with ctx.clock.part("saving"):
            files.write_text(target, json.dumps(result.to_dict()))
        log.info("scratch twin w=%d seed=%d: val acc %.4f, test acc %.4f", width, seed,
                 result.val_accuracy, result.test_accuracy)
        _check_teacher(ctx, width, result.val_accuracy)
        return result


_checked: set[str] = set()  # parent runs whose teacher was compared with their first twin


def _check_teacher(ctx: Context, width: int, val_accuracy: float) -> None:
    """A teacher no better on validation than the study's first scratch twin (of this width and
    validation accuracy) has nothing to teach it: a warning on the console and the tag
    `harness.teacher_warning` on the parent run (once per run)."""
    if ctx.parent_run_id in _checked:
        return
    _checked.add(ctx.parent_run_id)
    if ctx.teacher.val_accuracy <= val_accuracy:
        why = (f"the teacher (val acc {ctx.teacher.val_accuracy:.4f}) is no better than the scratch twin at width "
               f"{width} (val acc {val_accuracy:.4f}): distilling it is unlikely to help")
        log.warning("%s", why)
        MlflowClient().set_tag(ctx.parent_run_id, "harness.teacher_warning", why)
        ctx.teacher.warnings.append(why)  # repeated in the end-of-study summary
