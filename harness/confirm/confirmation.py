"""The confirmation stage: the search's chosen configurations again, over fresh seeds, paired.

A search trial is one seed and the best of many on the same validation split, so its gain is optimistic. Here
every chosen configuration (the Pareto front with two objectives, the best trial per width with one) is
trained again with `confirm.seeds` new seeds; each distilled run is paired with its scratch twin (same width,
seed, initial weights and batch order), and each arm is scored on validation (which chooses) and test (which
only reports), with its agreement, KL and calibration against the teacher. The seeds are new ones, never the
search's own, so the selection made on that seed does not leak into the means.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna

from harness import files
from harness.config import StudyConfig
from harness.confirm import keys, population
from harness.confirm.stats import Interval, mean_ci, paired_gain
from harness.data import omitted
from harness.data.evaluate import fidelity, predict_logits
from harness.distill.models import param_count
from harness.logs import Progress
from harness.record import TrialRecord, complete_records
from harness.search import baselines, interrupt
from harness.search.context import Context
from harness.search.trial import recipe_of, train_distilled

log = logging.getLogger(__name__)
COLUMNS = ("trial", "width", "params", "temperature", "alpha", "seed", "role", "val_accuracy", "test_accuracy",
           "agreement", "ece")


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
    transfer_examples: int | None = None  # how many examples it trained on (None: rows from before)
    # Omitted classes (else nan), test split: their accuracy, then all and theirs after the correction.
    omitted_accuracy: float = math.nan
    corrected_accuracy: float = math.nan
    corrected_omitted_accuracy: float = math.nan
    bias_shift: float = math.nan


def seeds(cfg: StudyConfig) -> list[int]:  # fresh: the search used cfg.seed
    return [cfg.seed + 1 + k for k in range(cfg.confirm.seeds)]


def configurations(study: optuna.Study, cfg: StudyConfig) -> list[TrialRecord]:
    """The Pareto front (two objectives), or the best complete trial per width (one)."""
    if cfg.multi_objective:
        # Equal-width configurations tie on the front only with equal validation accuracy;
        # confirming each would spend seeds on one question. Keep the first found.
        front: dict[int, TrialRecord] = {}
        for r in sorted(complete_records(study.best_trials), key=lambda r: r.number):
            front.setdefault(r.width, r)
        return [front[w] for w in sorted(front)]
    best: dict[int, TrialRecord] = {}
    for r in complete_records(study.trials):
        if r.width not in best or r.val_accuracy > best[r.width].val_accuracy:
            best[r.width] = r
    return [best[w] for w in sorted(best)]


def distilled(ctx: Context, r: TrialRecord, seed: int, arm: str = "") -> Row:
    """The configuration of trial `r` distilled at `seed`: trained once, then read from its JSON."""
    target = keys.target(ctx, r, seed)
    with files.locked(target.with_suffix(".lock")):
        if target.exists():  # trained for this key: under this arm's name and trial's number
            return dataclasses.replace(Row(**json.loads(target.read_text())), trial=r.number, arm=arm)
        tags = {"width": str(r.width), "seed": str(seed), "harness.arm": arm or "distilled",
                "optuna.trial": str(r.number)}
        with ctx.start_run("confirm", f"confirm-t{r.number}-s{seed}" + (f"-{arm}" if arm else ""), tags=tags):
            recipe = recipe_of(ctx, r)
            mlflow.log_params({"trial": r.number, "width": r.width, "seed": seed, "temperature": r.temperature,
                               "alpha": r.alpha, "teacher_mode": ctx.cfg.distillation.teacher,
                               "jitter": ctx.cfg.student.augment.jitter, **recipe.to_dict()})
            ctx.log_transfer()
            student, history = train_distilled(ctx, r.width, seed, r.temperature, r.alpha, recipe,
                                               [mlflow.keras.MlflowCallback()], every_epoch=False)
            test_logits = predict_logits(student, ctx.splits.test.images)
            test = fidelity(test_logits, ctx.splits.test.labels, ctx.teacher_test_probs)
            fix = omitted.correct(student, ctx.splits, ctx.omitted, test_logits) if ctx.omitted else None
            row = Row(r.number, r.width, param_count(student), r.temperature, r.alpha, seed, "distilled",
                      float(history["val_accuracy"][-1]), test["accuracy"], test["agreement"], test["ece"],
                      test["kl"], arm, ctx.transfer_examples, **(fix.summary() if fix else {}))
            mlflow.log_metrics({"test_accuracy": row.test_accuracy, "agreement": row.agreement,
                                "ece": row.ece, "kl": row.kl, "params": row.params, **(fix.metrics() if fix else {})})
        files.write_text(target, json.dumps(dataclasses.asdict(row)))
        return row


def scratch(ctx: Context, r: TrialRecord, seed: int, arm: str = "") -> Row:
    b = baselines.train_or_load(ctx, r.width, seed, recipe_of(ctx, r), role="confirm", together=ctx.together())
    fix = {k: b[k] for k in omitted.FIELDS if k in b}
    return Row(r.number, r.width, b["params"], r.temperature, r.alpha, seed, "scratch", b["val_accuracy"],
               b["test_accuracy"], b["agreement"], b["ece"], b["kl"], arm, ctx.transfer_examples, **fix)


def arms(ctx: Context) -> list[tuple[str, Context]]:
    """(name, context) per distilled arm: the file's own (unnamed) unless `confirm.arms` lists some."""
    return [(a.name, ctx.for_arm(a)) for a in ctx.cfg.confirm.arms] if ctx.cfg.confirm.arms else [("", ctx)]


def run(ctx: Context, configs: list[TrialRecord], progress: Progress = lambda phase, done, total: None) -> list[Row]:
    """Every configuration at every confirmation seed, in every arm: distilled and scratch (`progress`: each pair)."""
    contexts = arms(ctx)
    rows, todo = [], [(r, s, a) for r in configs for a in contexts for s in seeds(ctx.cfg)]
    log.info("confirmation: %d configuration(s) x %d seed(s) x %d arm(s), each distilled and from scratch",
             len(configs), len(seeds(ctx.cfg)), len(contexts))
    progress("confirmation", 0, len(todo))
    for i, (r, seed, (arm, actx)) in enumerate(todo, 1):
        if seed == seeds(ctx.cfg)[0]:  # a configuration's runs in an arm: together, unless cached or refused
            population.prepare(actx, r, seeds(ctx.cfg))
        with interrupt.deferred():
            pair = [distilled(actx, r, seed, arm), scratch(actx, r, seed, arm)]
        interrupt.check()
        rows += pair
        log.info("confirm %d/%d: trial %d (w=%d, T=%.2f, alpha=%.2f)%s seed %d: test acc %.4f distilled, "
                 "%.4f scratch", i, len(todo), r.number, r.width, r.temperature, r.alpha,
                 f" arm {arm}" if arm else "", seed, pair[0].test_accuracy, pair[1].test_accuracy)
        progress("confirmation", i, len(todo))
    ctx.fit_seconds += sum(a.fit_seconds for _, a in contexts if a is not ctx)
    ctx.train_flops += sum(a.train_flops for _, a in contexts if a is not ctx)
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
                             ci(s, "kl"), arm, first.transfer_examples, **extra))
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


def write_csv(rows: list[Row], path: Path) -> None:
    """`COLUMNS`, plus `arm` when the study confirms several arms, the transfer set's size, and the
    omitted-class figures when it omits classes."""
    columns = COLUMNS + (("arm",) if any(r.arm for r in rows) else ())
    columns += ("transfer_examples",) if any(r.transfer_examples is not None for r in rows) else ()
    columns += omitted.FIELDS if any(math.isfinite(r.omitted_accuracy) for r in rows) else ()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([getattr(r, c) for c in columns] for r in rows)


def verdict(c: Confirmed) -> str:
    g = c.test_gain
    return "not significant" if not g.excludes_zero else "significant gain" if g.mean > 0 else "significant loss"


def table(summary: list[Confirmed], teacher_test: float | None = None, teacher_ece: float | None = None,
          comparisons: list[dict] | None = None, notes: list[str] | None = None) -> str:
    """The confirmed table: test accuracy mean ± 95% CI half-width (points), paired gain; with
    several arms, an arm column and the arms' paired differences below; then `notes` (the
    reference arm's comparisons, the omitted classes before and after the bias correction)."""
    n = summary[0].n if summary else 0
    wide = max((len(c.arm) for c in summary), default=0)
    arm = (lambda c: f" {c.arm:<{wide}}") if wide else (lambda c: "")
    lines = [f"confirmed over {n} seeds (test split; mean ± 95% CI; gain = distilled - scratch, paired by seed):",
             f"{'trial':>5} {'width':>5} {'params':>9} {'T':>5} {'alpha':>5}" + (f" {'arm':<{wide}}" if wide else "")
             + f" {'scratch':>15} {'distilled':>15} {'gain (points)':>15}  {'agree s/d':>11} {'ECE s/d':>11}  verdict"]

    def pm(iv: Interval) -> str:
        return f"{100 * iv.mean:6.2f} ± {100 * iv.half_width:<6.2f}"

    for c in summary:
        lines.append(
            f"{c.trial:>5} {c.width:>5} {c.params:>9,} {c.temperature:>5.2f} {c.alpha:>5.2f}{arm(c)} "
            f"{pm(c.scratch_test)} {pm(c.test)} {c.test_gain.points():>15}  "
            f"{100 * c.scratch_agreement.mean:>5.1f}/{100 * c.agreement.mean:<5.1f} "
            f"{100 * c.scratch_ece.mean:>5.2f}/{100 * c.ece.mean:<5.2f}  {verdict(c)}")
    for d in comparisons or []:
        g = d["test_gain"]
        lines.append(f"trial {d['trial']}: {d['arm']} - {d['minus']} (distilled, paired by seed): test "
                     f"{g.points()} points ({'significant' if g.excludes_zero else 'not significant'})")
    lines += notes or []
    if teacher_test is not None:
        lines.append(f"teacher: test {100 * teacher_test:.2f}" +
                     (f", ECE {100 * teacher_ece:.2f}" if teacher_ece is not None else ""))
    return "\n".join(lines)
