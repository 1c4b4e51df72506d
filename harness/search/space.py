"""What a trial may suggest: temperature, alpha, a student width within the budget, and
optionally the recipe's learning rate and epochs, and the distillation method with its own
parameters (a conditional space: a method's are suggested only in its trials).

With `max_params`, widths whose student would exceed the budget are never
suggested: choices are filtered, and a range is cut at the largest width that
fits (found by bisection: parameters grow with width).
"""

from __future__ import annotations

import dataclasses

import optuna

from harness.config import ConfigError, StudyConfig
from harness.distill import methods
from harness.distill.methods import Method
from harness.distill.models import build_student, param_count
from harness.record import FIXED


def suggest(trial: optuna.Trial, cfg: StudyConfig, image_shape, num_classes: int) -> dict:
    s = cfg.search
    params = {"temperature": trial.suggest_float("temperature", s.temperature.low, s.temperature.high,
                                                 log=s.temperature.log)}
    if s.alpha is not None:
        params["alpha"] = trial.suggest_float("alpha", s.alpha.low, s.alpha.high, log=s.alpha.log)
    else:  # soft targets only (transfer.labels: false): not a search dimension; kept beside them
        params["alpha"] = 0.0
        trial.set_user_attr(FIXED + "alpha", 0.0)
    if s.width.choices is not None:
        params["width"] = trial.suggest_categorical("width", allowed_widths(cfg, image_shape, num_classes))
    else:
        hi = max_width_in_budget(cfg, image_shape, num_classes)
        params["width"] = trial.suggest_int("width", s.width.low, hi, log=s.width.log)
    if s.depth is not None:
        params["depth"] = trial.suggest_categorical("depth", s.depth.choices)
    if s.learning_rate is not None:
        params["learning_rate"] = trial.suggest_float("learning_rate", s.learning_rate.low, s.learning_rate.high,
                                                      log=s.learning_rate.log)
    if s.epochs is not None:
        params["epochs"] = trial.suggest_categorical("epochs", s.epochs.choices)
    params.update(_suggest_method(trial, cfg))
    return params


def _suggest_method(trial: optuna.Trial, cfg: StudyConfig) -> dict:
    """The method (suggested, or the file's) and its own parameters, suggested under it where the
    search gives a range (`search.<method>`), else fixed at distillation's values (kept as `fixed_`
    user attrs; the method's class says which, `distill/methods/`). Nothing at all for a study whose
    only method is the default (kd): its trials are as they always were."""
    s, d = cfg.search, cfg.distillation
    if s.method is None and d.method == methods.DEFAULT:
        return {}
    out = {}
    if s.method is not None:
        out["method"] = trial.suggest_categorical("method", s.method.choices)
    else:
        out["method"] = d.method
        trial.set_user_attr(FIXED + "method", d.method)
    spec = methods.get(out["method"])
    suggested, fixed = spec.suggest(trial, getattr(s, spec.name, None), getattr(d, spec.name, None))
    for name, value in fixed.items():
        trial.set_user_attr(FIXED + name, value)
    both = {**suggested, **fixed}
    return {**out, **{k: both[k] for k in spec.own_names()}}


def method_of(p: dict) -> Method:
    """The loss of a trial's suggestions (`suggest`'s dict)."""
    spec = methods.get(p.get("method") or methods.DEFAULT)
    return Method(spec.name, p["temperature"], p["alpha"], **{k: v for k, v in p.items() if k in spec.own_names()})


def check_budget(cfg: StudyConfig, image_shape, num_classes: int) -> None:
    """Before anything is written: some width must fit `max_params` (ConfigError if none)."""
    if cfg.search.width.choices is not None:
        allowed_widths(cfg, image_shape, num_classes)
    else:
        max_width_in_budget(cfg, image_shape, num_classes)


def params_at(cfg: StudyConfig, width: int, image_shape, num_classes: int) -> int:
    """Parameters of the student at `width`; with `search.depth`, at its deepest choice, so every
    (width, depth) a trial may suggest fits the budget."""
    student = cfg.student
    if cfg.search.depth is not None:
        student = dataclasses.replace(student, depth=max(cfg.search.depth.choices))
    return param_count(build_student(student, width, image_shape, num_classes, source=cfg.source))


def allowed_widths(cfg: StudyConfig, image_shape, num_classes: int) -> list[int]:
    """Width choices, minus those over the parameter budget."""
    choices = cfg.search.width.choices
    if cfg.max_params is None:
        return choices
    fits = [w for w in choices if params_at(cfg, w, image_shape, num_classes) <= cfg.max_params]
    if not fits:
        raise ConfigError(cfg.source, "max_params",
                          f"no width in search.width.choices fits {cfg.max_params} parameters")
    return fits


def max_width_in_budget(cfg: StudyConfig, image_shape, num_classes: int) -> int:
    """The largest width in [low, high] whose student fits `max_params`."""
    lo, hi = cfg.search.width.low, cfg.search.width.high
    if cfg.max_params is None:
        return hi
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if params_at(cfg, mid, image_shape, num_classes) <= cfg.max_params:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise ConfigError(cfg.source, "max_params", "even the smallest width exceeds it")
    return best


def balance_methods(study: optuna.Study, cfg: StudyConfig, todo: int, image_shape, num_classes: int) -> None:
    """With `search.method`, give every method (and every width choice) an equal share of the next
    `todo` trials: each is enqueued with its method and width fixed, in turn (Optuna's
    `enqueue_trial`; the other parameters are suggested as usual). Left to itself, TPE can spend a
    short search on one method and never try another (a first 18-trial run of the methods study
    sampled kd once), and then no method could be confirmed against kd. The turn continues from the
    trials already in the study, so a resumed study keeps the shares even."""
    if cfg.search.method is None or todo <= 0:
        return
    widths = allowed_widths(cfg, image_shape, num_classes) if cfg.search.width.choices is not None else [None]
    cells = [(m, w) for w in widths for m in cfg.search.method.choices]
    start = len(study.trials)
    for k in range(start, start + todo):
        method, width = cells[k % len(cells)]
        study.enqueue_trial({"method": method, **({"width": width} if width is not None else {})})
