"""Search dimensions as a study file gives them: a float range, a width space, a list of epochs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class WidthSpace:
    choices: list[int] | None = None
    low: int | None = None
    high: int | None = None
    log: bool = True


@dataclass(frozen=True)
class EpochSpace:
    choices: list[int]
