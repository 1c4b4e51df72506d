"""`Method`: the method one run trains with and its numbers (temperature, alpha, its own parameters).

What a trial, a confirmation run and a Distiller pass around; the method's behaviour is its
registered class (`spec`, base.py). Its own parameters are named `<method>_<field>` (`dkd_beta`)
and read as attributes (`m.dkd_beta`); those the caller leaves out take the method's defaults.
"""

from __future__ import annotations

from harness.distill.methods.base import DEFAULT, DistillMethod, get


class Method:
    """`Method(name, temperature, alpha, **own)`; immutable, compared and hashed by value.

    Raises ValueError for an unknown method name or an own parameter it does not have.
    """

    __slots__ = ("name", "temperature", "alpha", "_own")

    def __init__(self, name: str | None = None, temperature: float = 4.0, alpha: float = 0.1, **own):
        name = name or DEFAULT
        spec = get(name)
        unknown = set(own) - set(spec.own_names())
        if unknown:
            raise ValueError(f"method {name} has no parameter {', '.join(sorted(unknown))}")
        full = {**spec.own_of(None), **{k: v for k, v in own.items() if v is not None}}
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "_own", tuple(spec.coerce(full).items()))

    def __setattr__(self, key, value):
        raise AttributeError("Method is immutable: use replace()")

    def __getattr__(self, key):
        for k, v in object.__getattribute__(self, "_own"):
            if k == key:
                return v
        raise AttributeError(key)

    def _tuple(self):
        return (self.name, self.temperature, self.alpha, self._own)

    def __eq__(self, other):
        return isinstance(other, Method) and self._tuple() == other._tuple()

    def __hash__(self):
        return hash(self._tuple())

    def __repr__(self):
        return f"Method({self.name!r}, {self.temperature!r}, {self.alpha!r}, {dict(self._own)!r})"

    @property
    def spec(self) -> type[DistillMethod]:
        """The registered method class."""
        return get(self.name)

    @property
    def is_default(self) -> bool:
        """The default method (kd): its runs log, key and label nothing of it, as they always did."""
        return self.name == DEFAULT

    def own(self) -> dict:
        """The method's own parameters (none for kd)."""
        return dict(self._own)

    def replace(self, **changes) -> Method:
        """A copy with `changes` (temperature, alpha, own parameters; a new name starts from its defaults)."""
        name = changes.pop("name", self.name)
        base = {"temperature": self.temperature, "alpha": self.alpha, **(self.own() if name == self.name else {})}
        return Method(name, **{**base, **changes})

    def params(self) -> dict:
        """What an MLflow run logs about its loss: the method and its own parameters (nothing for
        the default method)."""
        return {} if self.is_default else {"method": self.name, **self.own()}

    def key_fields(self) -> dict:
        """What a cache key holds of the loss beyond T and alpha (nothing for the default method)."""
        return self.params()

    def graph_name(self) -> str:
        """What of the method shapes a compiled training step: its name, with its own parameters
        that are not numbers (a FitNets layer name: numbers are variables of the step)."""
        shaping = {k: v for k, v in self.own().items() if not isinstance(v, (int, float))}
        return self.name + (f"({', '.join(f'{k}={v}' for k, v in shaping.items())})" if shaping else "")

    def label(self) -> str:
        """One short line: `dkd(a=1, b=8, warmup=1)`."""
        return self.spec.label(self.own())

    def table_label(self) -> str:
        """The method column of a confirmation table: empty for the default method."""
        return "" if self.is_default else self.label()

    @classmethod
    def of(cls, record, **overrides) -> Method:
        """From anything with `temperature`, `alpha`, and (None where unknown) `method` and `own`
        (a `TrialRecord`); `overrides` on top (None: not overridden)."""
        name = getattr(record, "method", None) or DEFAULT
        own = {k: v for k, v in (getattr(record, "own", None) or {}).items() if k in get(name).own_names()}
        fields = {"temperature": record.temperature, "alpha": record.alpha, **own}
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(name, **fields)


def for_arm(method: Method, arm, distillation) -> Method:
    """A trial's loss under a confirmation arm (`config.ArmConfig`, or None: the trial's own).

    The arm's `method` (else the trial's), its `temperature` and `alpha` (else the trial's), and
    its method's own parameters: the arm's section, else the trial's when the trial has that
    method, else `distillation`'s (a `DistillationConfig`), else the defaults.
    """
    if arm is None:
        return method
    name = arm.method or method.name
    spec = get(name)
    if name != method.name:
        method = Method(name, method.temperature, method.alpha, **spec.own_of(getattr(distillation, name, None)))
    over = {"temperature": arm.temperature, "alpha": arm.alpha}
    section = getattr(arm, name, None)
    if section is not None:
        over.update(spec.own_of(section))
    return method.replace(**{k: v for k, v in over.items() if v is not None})
