"""The `student` section (family, depth, augmentation, a user's builder) and the model options a
teacher and a student share (family, dropout, pooling), with their checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

FAMILIES = ("mlp", "cnn")
# Students only: depthwise-separable blocks with a width multiplier, and Keras' MobileNetV3Small
# (distill/families.py).
STUDENT_FAMILIES = (*FAMILIES, "separable", "mobilenet_v3_small")


@dataclass(frozen=True)
class AugmentConfig:
    jitter: int = 0  # random shifts of up to this many pixels of the student's (and twin's) batches


@dataclass(frozen=True)
class StudentConfig:
    family: str = "mlp"
    depth: int = 2  # mlp: hidden layers of `width` units; cnn: conv blocks width, 2*width, ...
    head: int = 64  # cnn only
    dropout: float = 0.0
    input_dropout: float = 0.0
    batch_norm: bool = False  # cnn only
    pooling: str = "flatten"  # cnn only: flatten | gap
    convs_per_block: int = 1  # cnn only
    augment: AugmentConfig = AugmentConfig()
    # separable only: the channels of every block times this (MobileNet's width multiplier), on top
    # of the searched width (distill/families.py).
    width_multiplier: float = 1.0
    # "package.module:function" (the study file's folder importable), called as
    # function(width, input_shape, num_classes) -> a Keras model that outputs logits; replaces
    # `family` and its options (docs/own-student.md).
    builder: str | None = None

    def key_dict(self) -> dict:
        """The section as cache keys hold it: without `builder` when unset, nor `width_multiplier`
        when 1, so a family-built student's keys do not depend on the fields' existence."""
        d = dataclasses.asdict(self)
        if d["builder"] is None:
            d.pop("builder")
        if d["width_multiplier"] == 1.0:
            d.pop("width_multiplier")
        return d


def check_model(section: str, m, fail, allowed: tuple[str, ...] = FAMILIES) -> None:
    """What a teacher and a student section share: the family, dropout rates, pooling, convolutions."""
    if m.family not in allowed:
        fail(f"{section}.family", f"unknown model family {m.family!r}; allowed: {', '.join(allowed)}")
    for name in ("dropout", "input_dropout"):
        if not 0.0 <= getattr(m, name) < 1.0:
            fail(f"{section}.{name}", "must be in [0, 1)")
    if m.pooling not in ("flatten", "gap"):
        fail(f"{section}.pooling", f"unknown pooling {m.pooling!r}; allowed: flatten, gap")
    if m.convs_per_block < 1:
        fail(f"{section}.convs_per_block", "must be at least 1")


def check_student(s: StudentConfig, fail) -> None:
    check_model("student", s, fail, STUDENT_FAMILIES)
    if s.augment.jitter < 0:
        fail("student.augment.jitter", "must be 0 or more pixels")
    if s.depth < 1:
        fail("student.depth", "must be at least 1")
    if not (math.isfinite(s.width_multiplier) and s.width_multiplier > 0):
        fail("student.width_multiplier", "must be a finite number greater than 0")
    if s.builder is not None and not _builder_syntax(s.builder):
        fail("student.builder", f"expected \"package.module:function\", got {s.builder!r}")


def _builder_syntax(name: str) -> bool:
    """`module:function` with dotted identifiers on both sides (what `pkgutil.resolve_name` reads)."""
    module, colon, attr = name.partition(":")
    return bool(colon) and all(p.isidentifier() for p in module.split(".")) \
        and all(p.isidentifier() for p in attr.split("."))
