"""Intervals over seeds: what separates a finding from a lucky draw.

A gain is distilled minus scratch at the same seed (paired), so the spread
that matters is that of the differences, not of each arm. The interval is
Student's t at 95%, the standard for a handful of seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(d["mean"], d["low"], d["high"], d["n"])

    def points(self, digits: int = 2) -> str:
        """As accuracy points: '+0.84 ± 0.31'."""
        return f"{100 * self.mean:+.{digits}f} ± {100 * self.half_width:.{digits}f}"


def mean_ci(values, level: float = LEVEL) -> Interval:
    """Mean and two-sided Student-t interval; with one value the interval is unbounded."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def paired_gain(distilled, scratch, level: float = LEVEL) -> Interval:
    """Interval of distilled - scratch, pair by pair (same seed)."""
    d, s = np.asarray(distilled, np.float64), np.asarray(scratch, np.float64)
    if d.shape != s.shape:
        raise ValueError(f"unpaired: {d.shape} distilled vs {s.shape} scratch runs")
    return mean_ci(d - s, level)
