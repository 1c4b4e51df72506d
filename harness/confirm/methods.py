"""Method against method: each confirmed configuration of another method (dkd, fitnets, ...) minus the kd one of the same
width (and arm), distilled against distilled, paired by seed.

When the search tries several methods, each is confirmed at its own searched best (`configurations`:
the best trial per width and method), all at the same fresh seeds, so at a seed the students start
from the same weights and see the same batches: they differ in the loss (and its searched numbers)
alone, and share one scratch twin. Arms (`confirm.arms` with `method:`) are compared by
`between_arms` instead.
"""

from __future__ import annotations

from harness.confirm.confirmation import Row, _runs
from harness.confirm.stats import paired_gain
from harness.distill import methods


def between_methods(rows: list[Row]) -> list[dict]:
    """[{trial, arm (the method's label), minus ("kd (trial N)"), val_gain, test_gain}], as
    `between_arms` gives them (so the same table lines and stores show them)."""
    out = []
    groups = dict.fromkeys((r.width, r.arm) for r in rows)
    for width, arm in groups:
        trials = dict.fromkeys(r.trial for r in rows if (r.width, r.arm) == (width, arm) and r.role == "distilled")
        # the default method's configuration: its rows carry no method label
        default = [t for t in trials if not next(r.method for r in rows if r.trial == t and r.arm == arm)]
        if len(trials) < 2 or len(default) != 1:
            continue
        base = _runs(rows, default[0], arm, "distilled")
        for t in trials:
            if t == default[0]:
                continue
            runs = _runs(rows, t, arm, "distilled")
            if [r.seed for r in runs] != [r.seed for r in base]:
                raise ValueError(f"trials {t} and {default[0]} have different seeds; cannot pair them")
            out.append({"trial": t, "arm": runs[0].method + (f" [{arm}]" if arm else ""),
                        "minus": f"{methods.DEFAULT} (trial {default[0]})",
                        "val_gain": paired_gain([r.val_accuracy for r in runs], [r.val_accuracy for r in base]),
                        "test_gain": paired_gain([r.test_accuracy for r in runs], [r.test_accuracy for r in base])})
    return out
