"""`DistillMethod`: the small abstract base every distillation method implements, and the registry.

A method is one class, registered by name (as torchdistill registers its losses, and as each of
Keras' `keras/src/distillation/` losses is one object that validates itself and describes its
config). The class owns everything the rest of the harness needs to know about it:

* `name` and `short` (its own parameters' abbreviations in a table label: `dkd(a=1, b=8, warmup=0)`);
* `Config`: its section `distillation.<name>` (a frozen dataclass; None: it has no parameters of its
  own) and `check`, which reports a bad value through `fail(field, message)` as one `ConfigError`;
* `Space`: its section `search.<name>` (the dimensions Optuna suggests in its trials alone) and
  `check_space`;
* `loss`: its `(total, hard, soft)` for one run ([batch, classes]) and for a population
  ([K, batch, classes], every parameter [K]) by the same code (`distill/losses.py`).

A method's own parameters are named `<method>_<field>` outside its sections (Optuna's
parameters, `TrialRecord`, MLflow params, cache keys): `dkd_alpha`, `logit_std_weight`.

This module imports only `config.ranges` (a leaf) and no TensorFlow: `config` builds its method
sections from this registry, and the command line checks a study file with it before TensorFlow
starts. A method's `loss` imports `losses.py` when it is called.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from harness.config.ranges import EpochSpace, FloatRange  # noqa: F401  (a Space's field types)

Fail = Callable[[str, str], None]  # fail(field, message) raises the study file's ConfigError


class DistillMethod:
    """The contract of a distillation method; subclasses set the class attributes and `loss`.

    Methods are used as classes (no instance state): `get("dkd").loss(...)`.
    """

    name: str = ""
    Config: type | None = None  # distillation.<name>: the method's own parameters and their defaults
    Space: type | None = None  # search.<name>: each field a FloatRange, an EpochSpace (or choices) or null
    short: dict[str, str] = {}  # own field -> its abbreviation in a label
    uses_epoch: bool = False  # its loss reads the epoch (the Distiller counts it in the compiled step)
    masked: bool = False  # supports unlabeled transfer examples (label -1)
    stacks: bool = False  # the confirmation may train its distilled runs as one population
    needs_teacher: bool = False  # its step reads the teacher model itself, even with cached logits

    # ------------------------------------------------------------ own parameters
    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The section's field names (its own parameters), in order."""
        return tuple(f.name for f in dataclasses.fields(cls.Config)) if cls.Config else ()

    @classmethod
    def own_names(cls) -> tuple[str, ...]:
        """Its own parameters as named outside its section: `dkd_alpha`, ..."""
        return tuple(f"{cls.name}_{f}" for f in cls.fields())

    @classmethod
    def own_of(cls, section) -> dict:
        """`{dkd_alpha: ..}` from a `Config` instance (None: the defaults)."""
        section = section if section is not None else (cls.Config() if cls.Config else None)
        return {f"{cls.name}_{f}": getattr(section, f) for f in cls.fields()}

    @classmethod
    def coerce(cls, own: dict) -> dict:
        """Own parameters as their section types them (Optuna and MLflow may hand back 2.0 for 2)."""
        types = {f"{cls.name}_{f.name}": f.type for f in dataclasses.fields(cls.Config)} if cls.Config else {}
        return {k: (int(v) if types.get(k) in (int, "int") else v) for k, v in own.items()}

    # ------------------------------------------------------------ checks
    @classmethod
    def check(cls, section, where: str, fail: Fail) -> None:
        """A `Config` section's values (`where`: "distillation.dkd", "confirm.arms[0].dkd")."""

    @classmethod
    def check_space(cls, space, where: str, fail: Fail) -> None:
        """A `Space` section: every float range 0 <= low <= high (0 < low with log), as a weight is."""
        for f in cls.fields_of(space):
            r = getattr(space, f)
            if isinstance(r, FloatRange) and (r.low < 0 or r.low > r.high or (r.log and r.low <= 0)):
                fail(f"{where}.{f}", "needs 0 <= low <= high (0 < low with log: true): a weight is never negative")

    @staticmethod
    def fields_of(section) -> list[str]:
        return [f.name for f in dataclasses.fields(section)] if section is not None else []

    # ------------------------------------------------------------ search
    @classmethod
    def suggest(cls, trial, space, section) -> tuple[dict, dict]:
        """(suggested, fixed) own parameters of a trial under this method: each field of `space`
        that is set is suggested (`trial.suggest_float` for a range, `suggest_categorical` for
        choices), the others are `section`'s values (None: the defaults)."""
        fixed_values = cls.own_of(section)
        suggested, fixed = {}, {}
        for f in cls.fields():
            name = f"{cls.name}_{f}"
            r = getattr(space, f, None) if space is not None else None
            if r is None:
                fixed[name] = fixed_values[name]
            elif isinstance(r, FloatRange):
                suggested[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
            else:
                suggested[name] = trial.suggest_categorical(name, r.choices)
        return suggested, fixed

    # ------------------------------------------------------------ the loss
    @classmethod
    def loss(cls, labels, student_logits, teacher_logits, temperature, alpha, own: dict, epoch=None,
             masked: bool = False):
        """`(total, hard, soft)`, float32 scalars for one run or [K] for a population.

        labels: int [batch] or [K, batch]; student_logits: [batch, classes] or [K, batch, classes];
        teacher_logits: as the student's, or with an ensemble's members as the third-to-last axis;
        temperature, alpha and `own`'s values (keyed `dkd_alpha`, ...): scalars or [K]; `epoch`:
        the current epoch from 1 (float32), read by methods with `uses_epoch`.
        """
        raise NotImplementedError

    # ------------------------------------------------------------ before anything is written
    @classmethod
    def check_study(cls, cfg, student: Callable, teachers: Callable) -> None:
        """What the study file (`cfg`) asks of this method that only the models can tell (a layer that
        exists), before anything is written (the teacher is not trained yet): `student()` builds a
        student as the search does, `teachers()` the teacher's members as models whose layers can be
        named (`teacher.trained.layered`; None for one not readable yet); called only by a method that
        needs them (a build draws from Keras' seed). Raises the file's `ConfigError`. Nothing by default."""

    # ------------------------------------------------------------ inside the Distiller's step
    @classmethod
    def reset(cls, distiller) -> None:
        """Put what `attach` added back to its initial values: a compiled Distiller serves many runs
        (distill/compiled.py re-arms the student's variables). Nothing by default."""

    @classmethod
    def attach(cls, distiller, method) -> None:
        """Add to `distiller` (a `Distiller`, before its first step) what this method trains beside
        the student (Keras tracks an attribute's layers: they train with it) or reads from the
        teacher. Nothing by default."""

    @classmethod
    def forward(cls, distiller, x, y):
        """The student's training-mode pass: `(logits float32 [batch, classes], extra)`, `extra` a
        dict of what `step_loss` needs beside the logits (nothing by default)."""
        import tensorflow as tf

        return tf.cast(distiller.student(x, training=True), tf.float32), {}

    @classmethod
    def step_loss(cls, distiller, labels, student_logits, teacher_logits, extra: dict, epoch):
        """`(total, hard, soft)` in the Distiller's step: `loss` with its variables."""
        return cls.loss(labels, student_logits, teacher_logits, distiller._temperature, distiller._alpha,
                        distiller._own, epoch, masked=distiller.masked)

    @classmethod
    def label(cls, own: dict) -> str:
        """One short line: `dkd(a=1, b=8, warmup=1)`; the bare name without own parameters."""
        if not own:
            return cls.name
        body = ", ".join(f"{cls.short.get(k[len(cls.name) + 1:], k)}={_fmt(v)}" for k, v in own.items())
        return f"{cls.name}({body})"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


REGISTRY: dict[str, type[DistillMethod]] = {}
DEFAULT = "kd"  # the method a study trains with unless it names another


def register(cls: type[DistillMethod]) -> type[DistillMethod]:
    """Class decorator: make `cls` known by its `name` (a name is registered once)."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"a distillation method needs a new name (got {cls.name!r})")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[DistillMethod]:
    """The method registered as `name` (ValueError naming the registered ones)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown distillation method {name!r}; allowed: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Every registered method's name, the default (kd) first."""
    return tuple(sorted(REGISTRY, key=lambda n: n != DEFAULT))
