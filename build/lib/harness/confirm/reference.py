"""A reference arm: every confirmation arm measured against one arm's scratch twin, paired by seed.

A few-examples study asks how close a student trained on 1% or 3% of the
transfer set comes to the student trained on all of it; each arm's own scratch
twin answers a different question (same data, hard labels). Naming an arm in
`confirm.reference` adds, per arm, distilled and scratch minus the reference
arm's scratch twin at the same seed (same initial weights; the data differ).
"""

from __future__ import annotations

from harness.confirm.confirmation import Row, _runs
from harness.confirm.stats import Interval, paired_gain


def against_reference(rows: list[Row], reference: str | None) -> list[dict]:
    """Every arm's distilled and scratch students minus the reference arm's scratch twin, paired by
    seed (same initial weights; the data may differ): e.g. a few examples against all of them."""
    out = []
    for number in dict.fromkeys(r.trial for r in rows) if reference else []:
        ref = _runs(rows, number, reference, "scratch")
        for arm in dict.fromkeys(r.arm for r in rows if r.trial == number):
            for role in ("distilled", "scratch"):
                runs = _runs(rows, number, arm, role)
                if (arm, role) == (reference, "scratch") or not runs:
                    continue
                if [r.seed for r in runs] != [r.seed for r in ref]:
                    raise ValueError(f"trial {number}: arm {arm} and the reference have different seeds")
                out.append({"trial": number, "arm": arm, "role": role, "minus": reference,
                            "test_gain": paired_gain([r.test_accuracy for r in runs], [r.test_accuracy for r in ref])})
    return out


def lines(references: list[dict]) -> list[str]:
    out = []
    for d in references:
        g: Interval = d["test_gain"]
        out.append(f"trial {d['trial']}: {d['arm']} {d['role']} - {d['minus']} scratch (paired by seed): test "
                   f"{g.points()} points ({'significant' if g.excludes_zero else 'not significant'})")
    return out
