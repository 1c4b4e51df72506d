"""What leaves a study: the `champion` rule and the `exports` (formats, the int8 file's allowed
drop), with their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

EXPORT_FORMATS = ("savedmodel", "tflite", "tflite-int8")
CHAMPION_RULES = ("smallest_within", "best", "within_teacher")


@dataclass(frozen=True)
class ChampionConfig:
    rule: str = "smallest_within"
    # accuracy points below the best confirmed validation mean (smallest_within), or below the
    # teacher's validation accuracy (within_teacher: deploy/compression.py)
    tolerance: float = 0.5


def check_deploy(cfg, fail) -> None:
    if any(f not in EXPORT_FORMATS for f in cfg.exports) or len(set(cfg.exports)) != len(cfg.exports):
        fail("exports", f"allowed: a list of distinct formats among {', '.join(EXPORT_FORMATS)}")
    if not 0.0 <= cfg.exports_int8_max_drop <= 100.0:
        fail("exports_int8_max_drop", "must be between 0 and 100 accuracy points")
    if cfg.champion.rule not in CHAMPION_RULES:
        fail("champion.rule", f"unknown rule {cfg.champion.rule!r}; allowed: {', '.join(CHAMPION_RULES)}")
    if not math.isfinite(cfg.champion.tolerance) or cfg.champion.tolerance < 0:
        fail("champion.tolerance",
             f"must be a finite number of accuracy points, 0 or more (got {cfg.champion.tolerance})")
