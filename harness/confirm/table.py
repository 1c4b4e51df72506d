"""The confirmation's table and CSV: what a reader of `harness report` and `confirm.csv` sees.

Kept apart from `confirmation.py` (which re-exports `table`, `verdict`, `write_csv`), so the
stage's logic and its presentation each fit a page.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from harness.confirm.stats import Interval
from harness.data import omitted
from harness.distill import methods

COLUMNS = ("trial", "width", "params", "temperature", "alpha", "seed", "role", "val_accuracy", "test_accuracy",
           "agreement", "ece")


def write_csv(rows: list, path: Path) -> None:
    """`COLUMNS`, plus `arm` when the study confirms several arms, the transfer set's size, and the
    omitted-class figures when it omits classes, the method when one is not kd. `rows`: `Row`s."""
    columns = COLUMNS + (("arm",) if any(r.arm for r in rows) else ())
    columns += ("method",) if any(r.method for r in rows) else ()
    columns += ("transfer_examples",) if any(r.transfer_examples is not None for r in rows) else ()
    columns += omitted.FIELDS if any(math.isfinite(r.omitted_accuracy) for r in rows) else ()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([getattr(r, c) for c in columns])


def arm_seconds_lines(seconds: dict | None) -> list[str]:
    """The confirmation's wall time per named arm (`confirmation.run`'s `seconds`), one line; none
    without named arms."""
    named = {k: v for k, v in (seconds or {}).items() if k}
    if not named:
        return []
    return ["wall time by arm (this invocation; runs read from the stores cost next to nothing): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in named.items())]


def verdict(c) -> str:
    """A `Confirmed`'s test gain in words."""
    g = c.test_gain
    if not g.excludes_zero:
        return "not significant"
    return "significant gain" if g.mean > 0 else "significant loss"


def table(summary: list, teacher_test: float | None = None, teacher_ece: float | None = None,
          comparisons: list[dict] | None = None, notes: list[str] | None = None) -> str:
    """The confirmed table: test accuracy mean ± 95% CI half-width (points), paired gain; with
    several arms, an arm column and the arms' paired differences below; then `notes` (the
    reference arm's comparisons, the omitted classes before and after the bias correction). A
    method column when some configuration's method is not kd. `summary`: `Confirmed`s."""
    n = summary[0].n if summary else 0
    wide = max((len(c.arm) for c in summary), default=0)
    arm = (lambda c: f" {c.arm:<{wide}}") if wide else (lambda c: "")
    mw = max((len(c.method or methods.DEFAULT) for c in summary), default=0) if any(c.method for c in summary) else 0
    method = (lambda c: f" {c.method or methods.DEFAULT:<{mw}}") if mw else (lambda c: "")
    lines = [f"confirmed over {n} seeds (test split; mean ± 95% CI; gain = distilled - scratch, paired by seed):",
             f"{'trial':>5} {'width':>5} {'params':>9} {'T':>5} {'alpha':>5}" + (f" {'arm':<{wide}}" if wide else "")
             + (f" {'method':<{mw}}" if mw else "") + f" {'scratch':>15} {'distilled':>15} {'gain (points)':>15}  {'agree s/d':>11} {'ECE s/d':>11}  verdict"]

    def pm(iv: Interval) -> str:
        return f"{100 * iv.mean:6.2f} ± {100 * iv.half_width:<6.2f}"

    for c in summary:
        lines.append(
            f"{c.trial:>5} {c.width:>5} {c.params:>9,} {c.temperature:>5.2f} {c.alpha:>5.2f}{arm(c)}{method(c)} "
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
