"""Compression against the teacher: the `within_teacher` champion rule and the figures beside it.

`champion: {rule: within_teacher, tolerance: P}` picks the smallest confirmed configuration whose
confirmed validation mean is at most P accuracy points below the teacher's validation accuracy
("smallest" by the study's cost: params, latency_ms or size_bytes). None may qualify: that is an
answer (one line names the closest configuration, its gap and interval), not an error.

The figures: each configuration's parameters, float TFLite file size and single-image TFLite
latency (median, 1 thread; `deploy/latency.py`), each as a ratio to the teacher's, whose members are
converted once per study for this (an ensemble's figures are its members' sums); and its gap to the
teacher on test, the confirmed test mean minus the teacher's test accuracy, with the confirmed
interval (the teacher is one fixed model: its accuracy carries no seed spread here).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from harness.config import ConfigError, StudyConfig
from harness.deploy import latency, tflite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cost:
    """What a model costs deployed: parameters, float TFLite bytes, median ms for one image on one
    thread (None: it did not convert)."""
    params: int
    size_bytes: int | None = None
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def measure(models: Sequence, image: np.ndarray) -> Cost:
    """The summed cost of `models` (one student, or a teacher's members), each converted to a float
    TFLite file and timed on `image` ([h, w, c] float32, 0-255). A model that does not convert
    leaves size and latency None (logged)."""
    params, size, ms = 0, 0, 0.0
    for m in models:
        params += int(m.count_params())
        if size is None:
            continue
        try:
            flat = tflite.convert(m, "tflite")
            size, ms = size + len(flat), ms + latency.tflite_ms(flat, image)
        except Exception as e:  # noqa: BLE001 - a user's model the converter refuses: no ratio, said once
            log.warning("%s does not convert to TFLite (%s: %s): no size or latency ratio for it", m.name,
                        type(e).__name__, str(e).strip().splitlines()[0][:200] if str(e).strip() else "")
            size = ms = None
    return Cost(params, size, ms)


def check_teacher_accuracy(cfg: StudyConfig, teacher_val: float | None) -> None:
    """`within_teacher` needs the teacher's validation accuracy (ConfigError naming champion.rule)."""
    if cfg.champion.rule == "within_teacher" and (teacher_val is None or not math.isfinite(teacher_val)):
        raise ConfigError(cfg.source, "champion.rule", "within_teacher needs the teacher's validation accuracy, "
                                                       f"and there is none ({teacher_val}); use smallest_within")


def gap(c, teacher_val: float) -> float:
    """Points by which a configuration's confirmed validation mean falls short of the teacher's (< 0: below)."""
    return 100 * (c.val_accuracy - teacher_val)


def within_teacher(candidates: Sequence, tolerance: float, teacher_val: float | None,
                   cost: Callable | None = None, source: str = ""):
    """The cheapest candidate (by `cost`, parameters by default; ties: the more accurate) whose
    `val_accuracy` is at least `teacher_val - tolerance / 100`, or None. Raises ConfigError when
    `teacher_val` is missing or not finite."""
    if teacher_val is None or not math.isfinite(teacher_val):
        raise ConfigError(source, "champion.rule", "within_teacher needs the teacher's validation accuracy, "
                                                   f"and there is none ({teacher_val}); use smallest_within")
    cost = cost or (lambda c: c.params)
    ok = [c for c in candidates if c.val_accuracy >= teacher_val - tolerance / 100 - 1e-12]
    return min(ok, key=lambda c: (cost(c), -c.val_accuracy)) if ok else None


def none_line(candidates: Sequence, tolerance: float, teacher_val: float) -> str:
    """The one line that says no configuration qualifies, naming the closest with its gap and interval."""
    closest = max(candidates, key=lambda c: c.val_accuracy, default=None)
    head = (f"no confirmed configuration is within {tolerance:g} points of the teacher's validation accuracy "
            f"({100 * teacher_val:.2f}); nothing registered as champion")
    if closest is None:
        return head
    return (head + f"; closest: trial {closest.trial} (width {closest.width}, {closest.params:,} params), validation "
            f"{100 * closest.val.mean:.2f} ± {100 * closest.val.half_width:.2f}, gap {gap(closest, teacher_val):+.2f} "
            f"± {100 * closest.val.half_width:.2f} points")


def twin_better(c) -> bool:
    """Whether the scratch twin is significantly better than the distilled student (paired validation
    interval of distilled - scratch below 0 and excluding it)."""
    return c.val_gain.excludes_zero and c.val_gain.mean < 0


def twin_line(c) -> str:
    return (f"at the chosen size (trial {c.trial}, width {c.width}) the scratch twin is significantly better than "
            f"the distilled student: validation gain {c.val_gain.points()} points, test {c.test_gain.points()}; "
            "the scratch student is the one registered (tag harness.trained_as=scratch)")


def _ratio(a, b) -> str:
    return f"{a / b:>9.3f}" if a is not None and b else f"{'n/a':>9}"


def table_lines(summary: Sequence, figures: dict, teacher: dict | None) -> list[str]:
    """The compression columns of every confirmed configuration. `figures`: trial number (as a str or
    int) -> Cost dict (with `depth` when searched); `teacher`: {"test_accuracy", "val_accuracy",
    "cost": Cost dict}. Empty without a teacher's figures."""
    if not teacher or not summary:
        return []
    t = teacher["cost"]
    tsize = f"{t['size_bytes']:,} bytes" if t.get("size_bytes") else "no TFLite file"
    tms = f"{t['latency_ms']:.4f} ms" if t.get("latency_ms") else "no latency"
    lines = [f"against the teacher (test {100 * teacher['test_accuracy']:.2f}, validation "
             f"{100 * teacher['val_accuracy']:.2f}; {t['params']:,} params, {tsize}, {tms}; float TFLite, 1 image, "
             "1 thread); ratio = student / teacher:",
             f"{'trial':>5} {'width':>7} {'params':>9} {'test gap (points)':>19} {'params':>9} {'size':>9} "
             f"{'latency':>9}"]
    for c in summary:
        f = figures.get(str(c.trial)) or figures.get(c.trial) or {}
        g = 100 * (c.test.mean - teacher["test_accuracy"])
        arch = f"{c.width}" + (f"/d{f['depth']}" if f.get("depth") else "")  # width/depth when searched
        lines.append(f"{c.trial:>5} {arch:>7} {c.params:>9,} {g:>+10.2f} ± {100 * c.test.half_width:<6.2f} "
                     f"{_ratio(c.params, t['params'])} {_ratio(f.get('size_bytes'), t.get('size_bytes'))} "
                     f"{_ratio(f.get('latency_ms'), t.get('latency_ms'))}")
    return lines
