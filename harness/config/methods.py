"""The `distillation` section (teacher mode, method), and every registered method's own sections
(`distillation.<method>`, `search.<method>`, `confirm.arms[i].<method>`), built from the method
registry (distill/methods/): a method's section, its defaults and its checks are its class's, so a new
method adds none of them here."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from harness.distill import methods


def method_sections(kind: str) -> list[tuple]:
    """`make_dataclass` fields, `<method>: <its Config or Space> | None = None`, one per registered
    method that has that section (`kind`: "Config" or "Space")."""
    return [(spec.name, typing.Optional[getattr(spec, kind)], dataclasses.field(default=None))
            for spec in map(methods.get, methods.names()) if getattr(spec, kind) is not None]


def with_method_sections(base: type, kind: str) -> type:
    """`base` (a frozen dataclass) with one optional field per method section; named and placed as
    `base` was, so it pickles and prints as a hand-written section would."""
    name = base.__name__.lstrip("_")
    cls = dataclasses.make_dataclass(name, method_sections(kind), bases=(base,), frozen=True)
    cls.__module__, cls.__qualname__, cls.__doc__ = base.__module__, name, base.__doc__
    return cls


TEACHER_MODES = ("cached", "online", "views")


@dataclass(frozen=True)
class ViewsConfig:
    """`teacher: views`: the teacher's logits for `count` augmented views of every transfer image,
    computed once and cached (Beyer et al. 2022's consistent teaching, stored as in FKD, Shen & Xing
    2022). A view: a random crop of `crop` [h, w] pixels resized back (null: none), a horizontal flip
    (`flip`), a shift of up to `shift` pixels, and with `mixup` > 0 a mix with another transfer
    image's view, weighted by Beta(mixup, mixup) (data/views.py)."""
    count: int = 8
    shift: int = 2
    flip: bool = False
    crop: list[int] | None = None
    mixup: float = 0.0


@dataclass(frozen=True)
class _DistillationConfig:
    """cached: the teacher's logits over the (unaugmented) transfer set, computed once. online: the
    teacher runs inside each step on the student's own (augmented) batch, the "consistent" teacher of
    Beyer et al. 2022; it costs a teacher forward pass per step. views: the teacher's logits over
    `views.count` augmented views of every transfer image, computed once; each run trains on one view
    per example and epoch with that view's logits (`views`: the augmentation, null: its defaults).
    `method`: a registered method (search.method searches it instead); `<method>`: that method's own
    parameters (null: its defaults), allowed only under it."""
    teacher: str = "cached"
    method: str = methods.DEFAULT
    views: ViewsConfig | None = None

    @property
    def view_spec(self) -> ViewsConfig:
        """The views a `teacher: views` run trains on: `views`, or its defaults."""
        return self.views or ViewsConfig()


DistillationConfig = with_method_sections(_DistillationConfig, "Config")


@dataclass(frozen=True)
class MethodSpace:
    choices: list[str]


def check_distillation(cfg, fail) -> None:
    """How the teacher is consulted: cached logits, online (needed by an augmented student), or cached
    views (with their augmentation, `distillation.views`)."""
    d = cfg.distillation
    if d.teacher not in TEACHER_MODES:
        fail("distillation.teacher", f"unknown mode {d.teacher!r}; allowed: {', '.join(TEACHER_MODES)}")
    if cfg.student.augment.jitter and d.teacher == "cached":
        fail("distillation.teacher", "student.augment needs `teacher: online`: the cached logits are of "
                                     "unaugmented images, so they would not match the student's batches")
    if cfg.student.augment.jitter and d.teacher == "views":
        fail("student.augment.jitter", "`teacher: views` augments by its views (distillation.views.shift); "
                                       "a jitter on top would not match the views' cached logits")
    uses_views = d.teacher == "views" or any(a.teacher == "views" for a in cfg.confirm.arms or [])
    if d.views is not None and not uses_views:
        fail("distillation.views", f"only with `teacher: views` (here or in a confirm arm); the teacher "
                                   f"mode is {d.teacher}")
    if uses_views:
        check_views(d.view_spec, cfg, fail)


def check_views(v: ViewsConfig, cfg, fail) -> None:
    """The views' own fields (the crop against the image size: data/views.py `check`, once the data
    are read)."""
    if v.count < 1:
        fail("distillation.views.count", f"must be at least 1 view per image (got {v.count})")
    if v.shift < 0:
        fail("distillation.views.shift", f"must be 0 or more pixels (got {v.shift})")
    if v.mixup < 0:
        fail("distillation.views.mixup", f"must be 0 (off) or a Beta parameter above 0 (got {v.mixup})")
    if v.crop is not None and (len(v.crop) != 2 or min(v.crop) < 1):
        fail("distillation.views.crop", f"must be [height, width] in pixels, each at least 1 (got {v.crop})")
    if cfg.transfer.unlabeled is not None:
        fail("distillation.teacher", "views are of the transfer split's images; transfer.unlabeled's images "
                                     "have no cached views (use `teacher: cached` or `online`)")
    if v.mixup and cfg.transfer.omit_classes:
        fail("distillation.views.mixup", "mixes any two transfer images, so the omitted classes "
                                         "(transfer.omit_classes) would be seen; set mixup: 0")


def _sections(holder, kind: str = "Config") -> list[tuple]:
    """(method class, its section in `holder`) for every method section `holder` has set."""
    specs = [methods.get(n) for n in methods.names() if getattr(methods.get(n), kind) is not None]
    return [(spec, getattr(holder, spec.name, None)) for spec in specs
            if getattr(holder, spec.name, None) is not None]


def _check_method_params(where: str, method: str | None, holder, fail, whose: str) -> None:
    """A method's own section only under that method; then the method's own checks."""
    for spec, _ in _sections(holder):
        if method != spec.name:
            fail(f"{where}.{spec.name}", f"parameters of method {spec.name}, but {whose} method is "
                                         f"{method or 'not set'} (allowed here: {method or 'none'}'s own)")
    for spec, section in _sections(holder):
        spec.check(section, f"{where}.{spec.name}", fail)


def check_methods(cfg, fail) -> None:
    """distillation.method, search.method and confirm.arms' methods, each against the registry."""
    d, sp = cfg.distillation, cfg.search
    known = methods.names()
    if d.method not in known:
        fail("distillation.method", f"unknown method {d.method!r}; allowed: {', '.join(known)}")
    if sp.method is not None:
        bad = [m for m in sp.method.choices if m not in known]
        if bad or len(set(sp.method.choices)) != len(sp.method.choices):
            fail("search.method.choices", f"distinct methods among {', '.join(known)} (got {sp.method.choices})")
    chosen = cfg.methods
    for where, kind in (("distillation", "Config"), ("search", "Space")):
        for spec, _ in _sections(getattr(cfg, where), kind):
            if spec.name not in chosen:
                fail(f"{where}.{spec.name}", f"parameters of method {spec.name}, but the study's method is "
                                             f"{' or '.join(chosen)} (search.method offers no {spec.name})")
    set_first = next((spec.name for spec, _ in _sections(d)), None)
    _check_method_params("distillation", set_first, d, fail, "the")
    for spec, space in _sections(sp, "Space"):
        spec.check_space(space, f"search.{spec.name}", fail)
    for i, arm in enumerate(cfg.confirm.arms or []):
        where = f"confirm.arms[{i}]"
        if arm.method is not None and arm.method not in known:
            fail(f"{where}.method", f"unknown method {arm.method!r}; allowed: {', '.join(known)}")
        _check_method_params(where, arm.method, arm, fail, "this arm's")
        if arm.temperature is not None and arm.temperature <= 0:
            fail(f"{where}.temperature", "must be greater than 0")
        if arm.alpha is not None and not 0 <= arm.alpha <= 1:
            fail(f"{where}.alpha", "alpha must lie in [0, 1]")
        if arm.alpha not in (None, 0.0) and not cfg.transfer.labels:
            fail(f"{where}.alpha", "transfer.labels: false trains on soft targets only (alpha is 0)")
    _check_unlabeled(cfg, fail)


def _check_unlabeled(cfg, fail) -> None:
    """Unlabeled transfer images (label -1) teach through the soft targets alone: only a method that
    takes them (`masked` in its registration) may train on them, the file's and each arm's."""
    takes = [n for n in methods.names() if methods.get(n).masked]

    def refuse(transfer, where: str, chosen, whose: str) -> None:
        bad = [m for m in chosen if m in methods.names() and not methods.get(m).masked]
        if transfer is not None and transfer.has_unlabeled and bad:
            field = f"{where}.{'unlabeled' if transfer.unlabeled is not None else 'unlabeled_rest'}"
            fail(field, f"unlabeled images teach through the soft targets alone, which {whose} method "
                        f"{' and '.join(bad)} does not take; methods that do: {', '.join(takes)}")

    refuse(cfg.transfer, "transfer", cfg.methods, "the study's")
    for i, arm in enumerate(cfg.confirm.arms or []):
        refuse(arm.transfer or cfg.transfer, f"confirm.arms[{i}].transfer" if arm.transfer else "transfer",
               [arm.method] if arm.method else cfg.methods, f"confirm.arms[{i}]'s")
