"""The scratch twin: the same student trained from scratch on hard labels alone.

Every distillation gain is measured against it, so it must differ from the
distilled student in the loss alone: same width, seed (initial weights and
batch order), epochs and recipe. It is trained once per key (everything that
determines it, the teacher included since its fidelity is measured against
that teacher) and kept as a small JSON file under `baselines/`; plots and the
report ask this module for those paths instead of rebuilding them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import keras
import mlflow
import tensorflow as tf
from mlflow.tracking import MlflowClient

from harness import files
from harness.config import StudyConfig
from harness.data import omitted
from harness.data.evaluate import fidelity, predict_logits
from harness.distill import builder, precision
from harness.distill.distiller import compile_plain
from harness.distill.guard import Diverged, DivergenceGuard
from harness.distill.models import flops_per_example, param_count
from harness.distill.recipe import Recipe
from harness.search import interrupt
from harness.search.clock import TimedMlflowCallback
from harness.search.context import Context
from harness.teacher.trained import cache_key as teacher_key

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
    sections, the recipe, width, seed, the teacher's key, the library versions and the precision.
    `together`: trained in a population (the confirmation's), equal to a lone run to float
    tolerance but not bit for bit, so kept apart."""
    recipe = recipe or Recipe.of(cfg.training)
    # The precision enters as resolved (and not at all for float32, so float32 keys are those of before).
    training = {k: v for k, v in dataclasses.asdict(cfg.training).items() if k != "precision"}
    what = {"data": data, "student": cfg.student.key_dict(),
            "training": training, "recipe": recipe.to_dict(), "width": width,
            "seed": cfg.seed if seed is None else seed, "teacher": teacher_key(cfg, data),
            "versions": [tf.__version__, keras.__version__], **precision.key_part(precision.resolved(cfg))}
    # The twin's own examples (absent when all: older twins stay valid). Not `labels`: a twin always
    # learns from hard labels, so a soft-targets-only study shares the twins of its data. Nor the
    # unlabeled images: a twin never sees them, so a study with them shares the twins of one without.
    examples = {"fraction": cfg.transfer.fraction, "omit_classes": cfg.transfer.omit_classes}
    if examples != {"fraction": 1.0, "omit_classes": None}:
        what["transfer"] = examples
    if cfg.student.builder is not None:  # the user's function, by name and source file's SHA-256
        what["student"]["builder"] = builder.identity(cfg.student.builder, cfg.source)
    if together:
        what["population"] = True
    return files.digest(json.dumps(what, sort_keys=True))


def path(workdir: Path, cfg: StudyConfig, width: int, seed: int | None = None,
         recipe: Recipe | None = None, together: bool = False, *, data: str) -> Path:
    return Path(workdir) / "baselines" / f"{key(cfg, width, seed, recipe, together, data=data)}.json"


def load(workdir: Path, cfg: StudyConfig, widths, seed: int | None = None, *, data: str) -> list[dict]:
    """The twins already trained for these widths (with the file's own recipe) on the data of
    digest `data`, by width."""
    out = []
    for w in sorted(set(widths)):
        p = path(workdir, cfg, w, seed, data=data)
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out


def train_or_load(ctx: Context, width: int, seed: int | None = None, recipe: Recipe | None = None,
                  role: str = "baseline", together: bool = False) -> dict:
    """The student at this width, seed and recipe trained from scratch: once per key, shared by
    every trial and confirmation run that pairs with it. `role` tags its MLflow run; `together`:
    the run was trained in a population (`ctx.pretrained` holds it)."""
    cfg, tr = ctx.cfg, ctx.cfg.training
    seed = cfg.seed if seed is None else seed
    recipe = recipe or Recipe.of(tr)
    target = path(ctx.ws.workdir, cfg, width, seed, recipe, together, data=ctx.splits.digest)
    with files.locked(target.with_suffix(".lock")):
        if target.exists():
            try:
                result = json.loads(target.read_text())
                _check_teacher(ctx, result)
                return result
            except json.JSONDecodeError:
                log.warning("baseline %s is damaged; training it again", target)
        clock = ctx.clock
        pre = ctx.pretrained.pop(ctx.run_key("scratch", width, seed, recipe), None) if together else None
        if pre is None:
            with clock.part("build_compile"):
                fresh, train = ctx.inputs(width, seed, distilled=False)
                _, student = ctx.compiled.get(
                    ctx.compile_key("scratch", width, recipe), fresh,
                    lambda s: compile_plain(s, recipe.optimizer_for(ctx.transfer_examples), jit_compile=ctx.jit,
                                            steps_per_execution=tr.steps_per_execution))
        tags = {"width": str(width), "seed": str(seed), "harness.arm": "scratch"}
        with clock.part("mlflow"):
            run = ctx.start_run(role, f"{role}-w{width}-s{seed}", tags=tags)
        with run:
            with clock.part("mlflow"):
                mlflow.log_params({"width": width, "seed": seed, "family": cfg.student.builder or cfg.student.family,
                                   "depth": cfg.student.depth, "precision": ctx.precision, **recipe.to_dict()})
                ctx.log_transfer()
            if pre is None:
                t0 = time.perf_counter()
                # Validated once, at the end: a twin is a reference point, never pruned.
                try:
                    with clock.part("fit"):
                        history = student.fit(train, epochs=recipe.epochs, verbose=0, shuffle=False,
                                              callbacks=[ctx.validation(student, every_epoch=False, batch_means=False),
                                                         interrupt.StopOnInterrupt(), TimedMlflowCallback(clock),
                                                         DivergenceGuard()]).history
                except Diverged as e:
                    mlflow.set_tag("fail_reason", str(e))
                    raise TwinDiverged(f"scratch twin w={width} seed={seed}: {e}; it is not cached") from None
                finally:
                    ctx.fit_seconds += time.perf_counter() - t0
                ctx.count_training(student, len(history["loss"]))
            else:  # trained with its seed's distilled students (confirm/population.py)
                student, history = pre
                ctx.log_history(history)
            # Twins are reference points, never chosen by anything: reporting
            # their test accuracy beside the champion's leaks no selection.
            with clock.part("evaluation"):
                test_logits = predict_logits(student, ctx.splits.test.images)
                test = fidelity(test_logits, ctx.splits.test.labels, ctx.teacher_test_probs)
            result = {"width": width, "seed": seed, "val_accuracy": float(history["val_accuracy"][-1]),
                      "test_accuracy": test["accuracy"], "agreement": test["agreement"], "kl": test["kl"],
                      "ece": test["ece"], "params": param_count(student), "flops": flops_per_example(student),
                      "epochs": recipe.epochs, "learning_rate": recipe.learning_rate,
                      "mlflow_run_id": run.info.run_id}
            fix = None
            if ctx.omitted:  # never saw these classes: near 0% on them, before and after the correction
                with clock.part("evaluation"):
                    fix = omitted.correct(student, ctx.splits, ctx.omitted, test_logits)
                    result.update(fix.summary())
            check_finite(result, [float(v) for v in history["loss"]])
            if role == "confirm":  # kept, so a twin better than its distilled student can be registered
                with clock.part("saving"), files.replacing(target.with_suffix(".keras"), suffix=".keras") as tmp:
                    student.save(tmp)
                result["model_path"] = str(target.with_suffix(".keras"))
            with clock.part("mlflow"):
                mlflow.log_metrics({k: result[k] for k in ("params", "flops", "test_accuracy", "agreement", "kl",
                                                           "ece")})
                if fix is not None:
                    mlflow.log_metrics(fix.metrics())
                mlflow.end_run()  # here, to be timed; the `with` then finds no run to end
        with clock.part("saving"):
            files.write_text(target, json.dumps(result))
        log.info("scratch twin w=%d seed=%d: val acc %.4f, test acc %.4f", width, seed,
                 result["val_accuracy"], result["test_accuracy"])
        _check_teacher(ctx, result)
        return result


_checked: set[str] = set()  # parent runs whose teacher was compared with their first twin


def _check_teacher(ctx: Context, twin: dict) -> None:
    """A teacher no better on validation than the study's first scratch twin has nothing to teach it:
    a warning on the console and the tag `harness.teacher_warning` on the parent run (once per run)."""
    if ctx.parent_run_id in _checked:
        return
    _checked.add(ctx.parent_run_id)
    if ctx.teacher.val_accuracy <= twin["val_accuracy"]:
        why = (f"the teacher (val acc {ctx.teacher.val_accuracy:.4f}) is no better than the scratch twin at width "
               f"{twin['width']} (val acc {twin['val_accuracy']:.4f}): distilling it is unlikely to help")
        log.warning("%s", why)
        MlflowClient().set_tag(ctx.parent_run_id, "harness.teacher_warning", why)
