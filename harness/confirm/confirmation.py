"""The confirmation stage: the search's chosen configurations again, over fresh seeds, paired.

A search trial is one seed and the best of many on the same validation split, so its gain is optimistic. Here
every chosen configuration (the Pareto front with two objectives, the best trial per width with one) is
trained again with `confirm.seeds` new seeds; each distilled run is paired with its scratch twin (same width,
seed, initial weights and batch order), and each arm is scored on validation (which chooses) and test (which
only reports), with its agreement, KL and calibration against the teacher. The seeds are new ones, never the
search's own, so the selection made on that seed does not leak into the means.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass

import optuna

from harness import files
from harness.config import StudyConfig
from harness.confirm import keys, population
from harness.confirm.stats import Interval, mean_ci, paired_gain
from harness.confirm.table import COLUMNS, arm_seconds_lines, table, verdict, write_csv  # noqa: F401 (table.py)
from harness.distill import methods
from harness.distill.methods import Method, for_arm
from harness.logs import Progress
from harness.record import TrialRecord, complete_records
from harness.training import depth, interrupt, twin
from harness.training.context import Context
from harness.training.run import RunResult, RunSpec, recipe_of, train_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One confirmation run: a row of `confirm.csv` (plus KL, kept in the JSON)."""
    trial: int
    width: int
    params: int
    temperature: float
    alpha: float
    seed: int
    role: str  # "distilled" or "scratch"
    val_accuracy: float
    test_accuracy: float
    agreement: float
    ece: float
    kl: float  # KL(teacher || student) at T = 1, test split, nats
    arm: str = ""  # with `confirm.arms`: the arm's name (a scratch row: the arm it is the twin of)
    transfer_examples: int | None = None  # how many examples it trained on (None: a row stored without it)
    # Omitted classes (else nan), test split: their accuracy, then all and theirs after the correction.
    omitted_accuracy: float = math.nan
    corrected_accuracy: float = math.nan
    corrected_omitted_accuracy: float = math.nan
    bias_shift: float = math.nan
    method: str = ""  # the loss when not the default (kd), with its own parameters: `Method.label()` ("dkd(a=1, b=8, warmup=2)")

    @classmethod
    def of(cls, run: RunResult, r: TrialRecord, m: Method, role: str, arm: str, transfer_examples: int) -> "Row":
        """The row of one confirmation run of trial `r` under method `m` (a scratch row: the twin of
        that distilled run), from what the run measured."""
        return cls(r.number, r.width, run.params, m.temperature, m.alpha, run.seed, role, run.val_accuracy,
                   run.test_accuracy, run.agreement, run.ece, run.kl, arm, transfer_examples, **run.omitted,
                   method=m.table_label())


def seeds(cfg: StudyConfig) -> list[int]:  # fresh: the search used cfg.seed
    return [cfg.seed + 1 + k for k in range(cfg.confirm.seeds)]


def configurations(study: optuna.Study, cfg: StudyConfig) -> list[TrialRecord]:
    """The Pareto front (two objectives), or the best complete trial per width (one); per width and
    method when the search tries several methods (each method at its searched best)."""
    def at(r: TrialRecord):
        return (r.width, r.method or methods.DEFAULT) if cfg.search.method is not None else (r.width, "")

    if cfg.multi_objective:
        # Equal-width configurations tie on the front only with equal validation accuracy;
        # confirming each would spend seeds on one question. Keep the first found.
        front: dict[tuple, TrialRecord] = {}
        for r in sorted(complete_records(study.best_trials), key=lambda r: r.number):
            front.setdefault(at(r), r)
        return [front[w] for w in sorted(front)]
    best: dict[tuple, TrialRecord] = {}
    for r in complete_records(study.trials):
        if at(r) not in best or r.val_accuracy > best[at(r)].val_accuracy:
            best[at(r)] = r
    return [best[w] for w in sorted(best)]


def distilled(ctx: Context, r: TrialRecord, seed: int, arm: str = "", method: Method | None = None) -> Row:
    """The configuration of trial `r` distilled at `seed` (with `method`, else the trial's): trained
    once, then read from its JSON."""
    m = method or Method.of(r)
    target = keys.target(ctx, r, seed, m)
    with files.locked(target.with_suffix(".lock")):
        if target.exists():  # trained for this key: under this arm's name and trial's number
            return dataclasses.replace(Row(**json.loads(target.read_text())), trial=r.number, arm=arm)
        recipe = recipe_of(ctx, r)
        spec = RunSpec("confirm", f"confirm-t{r.number}-s{seed}" + (f"-{arm}" if arm else ""), r.width, seed, recipe,
                       m, params={"trial": r.number, "width": r.width, "seed": seed, "temperature": m.temperature,
                                  "alpha": m.alpha, "teacher_mode": ctx.cfg.distillation.teacher,
                                  "jitter": ctx.cfg.student.augment.jitter, **recipe.to_dict(), **m.params()},
                       tags={"width": str(r.width), "seed": str(seed), "harness.arm": arm or "distilled",
                             "optuna.trial": str(r.number)},
                       every_epoch=False, test=True)
        with spec.start(ctx):
            row = Row.of(train_run(ctx, spec), r, m, "distilled", arm, ctx.transfer_examples)
        files.write_text(target, json.dumps(dataclasses.asdict(row)))
        return row


def scratch(ctx: Context, r: TrialRecord, seed: int, arm: str = "", method: Method | None = None) -> Row:
    """The twin of `distilled(ctx, r, seed, arm, method)`: the same whatever the method."""
    result = twin.train_or_load(ctx, r.width, seed, recipe_of(ctx, r), role="confirm", together=ctx.together())
    return Row.of(result, r, method or Method.of(r), "scratch", arm, ctx.transfer_examples)


def arms(ctx: Context, seconds: dict | None = None) -> list[tuple[str, Context, object]]:
    """(name, context, ArmConfig or None) per distilled arm: the file's own (unnamed) unless
    `confirm.arms` lists some. `seconds`: each arm's context's wall seconds (its views' teacher
    pass, when not cached) added under its name."""
    if not ctx.cfg.confirm.arms:
        return [("", ctx, None)]
    out = []
    for a in ctx.cfg.confirm.arms:
        t0 = time.perf_counter()
        out.append((a.name, ctx.for_arm(a), a))
        _add(seconds, a.name, t0)
    return out


def _add(seconds: dict | None, arm: str, t0: float) -> None:
    if seconds is not None:
        seconds[arm] = seconds.get(arm, 0.0) + time.perf_counter() - t0


def run(ctx: Context, configs: list[TrialRecord], progress: Progress = lambda phase, done, total: None,
        seconds: dict | None = None) -> list[Row]:
    """Every configuration at every confirmation seed, in every arm: distilled and scratch (`progress`: each pair).
    `seconds` (a dict, filled when given): each arm's wall seconds in this call, by name: its
    context, populations, distilled runs and twins (a run read from its store costs next to nothing)."""
    contexts = arms(ctx, seconds)
    rows, todo = [], [(r, s, a) for r in configs for a in contexts for s in seeds(ctx.cfg)]
    log.info("confirmation: %d configuration(s) x %d seed(s) x %d arm(s), each distilled and from scratch",
             len(configs), len(seeds(ctx.cfg)), len(contexts))
    progress("confirmation", 0, len(todo))
    for i, (r, seed, (arm, actx, a)) in enumerate(todo, 1):
        t0 = time.perf_counter()
        actx = depth.context(actx, r.depth)  # a searched depth: its own context (training/depth.py)
        m = for_arm(Method.of(r), a, ctx.cfg.distillation)
        if seed == seeds(ctx.cfg)[0]:  # a configuration's runs in an arm: together, unless cached or refused
            population.prepare(actx, r, seeds(ctx.cfg), m)
        with interrupt.deferred():
            pair = [distilled(actx, r, seed, arm, m), scratch(actx, r, seed, arm, m)]
        interrupt.check()
        _add(seconds, arm, t0)
        rows += pair
        log.info("confirm %d/%d: trial %d (w=%d, T=%.2f, alpha=%.2f, %s)%s seed %d: test acc %.4f distilled, "
                 "%.4f scratch", i, len(todo), r.number, r.width, m.temperature, m.alpha, m.label(),
                 f" arm {arm}" if arm else "", seed, pair[0].test_accuracy, pair[1].test_accuracy)
        progress("confirmation", i, len(todo))
    for _, a, _ in contexts:
        depth.settle(a)
    ctx.fit_seconds += sum(a.fit_seconds for _, a, _ in contexts if a is not ctx)
    ctx.train_flops += sum(a.train_flops for _, a, _ in contexts if a is not ctx)
    return rows


@dataclass
class Confirmed:
    """One configuration over its seeds: what the champion rule and the report read."""
    trial: int
    width: int
    params: int
    temperature: float
    alpha: float
    n: int
    val: Interval  # distilled
    test: Interval
    scratch_val: Interval
    scratch_test: Interval
    val_gain: Interval  # paired: distilled - scratch, seed by seed
    test_gain: Interval
    agreement: Interval
    scratch_agreement: Interval
    ece: Interval
    scratch_ece: Interval
    kl: Interval
    scratch_kl: Interval
    arm: str = ""
    transfer_examples: int | None = None
    omitted: Interval | None = None  # omitted classes (else None): test accuracy on them, then corrected
    scratch_omitted: Interval | None = None
    corrected: Interval | None = None  # test accuracy, all classes
    scratch_corrected: Interval | None = None
    corrected_omitted: Interval | None = None
    scratch_corrected_omitted: Interval | None = None
    corrected_gain: Interval | None = None  # corrected distilled - corrected scratch, paired by seed
    bias_shift: Interval | None = None  # the distilled students' shifts
    method: str = ""  # the loss when not the default (`Row.method`)

    @property
    def val_accuracy(self) -> float:  # what `champion.select` ranks by
        return self.val.mean

    def to_dict(self) -> dict:
        return {k: (v.to_dict() if isinstance(v, Interval) else v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Confirmed":
        return cls(**{k: (Interval.from_dict(v) if isinstance(v, dict) else v) for k, v in d.items()})


def _groups(rows: list[Row]) -> list[tuple[int, str]]:
    """(trial, arm) in order of size, then of the arms' first appearance."""
    order = list(dict.fromkeys((r.trial, r.arm) for r in rows))
    params = {r.trial: r.params for r in rows}
    return sorted(order, key=lambda g: (params[g[0]], g[0], order.index(g)))


def _runs(rows: list[Row], number: int, arm: str, role: str) -> list[Row]:
    return sorted((r for r in rows if r.trial == number and r.arm == arm and r.role == role),
                  key=lambda r: r.seed)


def summarise(rows: list[Row]) -> list[Confirmed]:
    out = []
    for number, arm in _groups(rows):
        d, s = _runs(rows, number, arm, "distilled"), _runs(rows, number, arm, "scratch")
        if [r.seed for r in d] != [r.seed for r in s]:
            raise ValueError(f"trial {number}: distilled and scratch seeds differ; cannot pair them")

        def ci(runs, field):
            return mean_ci([getattr(r, field) for r in runs])

        def gain(field):
            return paired_gain([getattr(r, field) for r in d], [getattr(r, field) for r in s])

        first = d[0]
        fixed = all(math.isfinite(r.omitted_accuracy) for r in d + s)
        extra = dict(omitted=ci(d, "omitted_accuracy"), scratch_omitted=ci(s, "omitted_accuracy"),
                     corrected=ci(d, "corrected_accuracy"), scratch_corrected=ci(s, "corrected_accuracy"),
                     corrected_omitted=ci(d, "corrected_omitted_accuracy"),
                     scratch_corrected_omitted=ci(s, "corrected_omitted_accuracy"),
                     corrected_gain=gain("corrected_accuracy"), bias_shift=ci(d, "bias_shift")) if fixed else {}
        out.append(Confirmed(number, first.width, first.params, first.temperature, first.alpha, len(d),
                             ci(d, "val_accuracy"), ci(d, "test_accuracy"), ci(s, "val_accuracy"),
                             ci(s, "test_accuracy"), gain("val_accuracy"), gain("test_accuracy"),
                             ci(d, "agreement"), ci(s, "agreement"), ci(d, "ece"), ci(s, "ece"), ci(d, "kl"),
                             ci(s, "kl"), arm, first.transfer_examples, **extra, method=first.method))
    return out


def between_arms(rows: list[Row]) -> list[dict]:
    """Each later arm against each earlier one, distilled vs distilled, paired by seed (same
    initial weights and batch order; the jitter may differ): what the arms' difference is worth."""
    out = []
    for number in dict.fromkeys(r.trial for r in rows):
        names = list(dict.fromkeys(r.arm for r in rows if r.trial == number))
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ra, rb = _runs(rows, number, a, "distilled"), _runs(rows, number, b, "distilled")
                if [r.seed for r in ra] != [r.seed for r in rb]:
                    raise ValueError(f"trial {number}: arms {a} and {b} have different seeds")
                out.append({"trial": number, "arm": b, "minus": a,
                            "val_gain": paired_gain([r.val_accuracy for r in rb], [r.val_accuracy for r in ra]),
                            "test_gain": paired_gain([r.test_accuracy for r in rb],
                                                     [r.test_accuracy for r in ra])})
    return out
