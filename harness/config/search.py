"""The `search` section (what Optuna suggests), the objectives, the pruner, the trial budget and the
heartbeat, with their checks."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.methods import MethodSpace, with_method_sections
from harness.config.ranges import EpochSpace, FloatRange, WidthSpace

OBJECTIVES = ("val_accuracy", "params", "latency_ms", "size_bytes")  # the second one is minimised
PRUNERS = ("median", "hyperband", "successive_halving", "none")


@dataclass(frozen=True)
class _SearchConfig:
    temperature: FloatRange = FloatRange(1.0, 20.0, log=True)
    alpha: FloatRange | None = FloatRange(0.0, 1.0)  # null: not searched, fixed at 0 (transfer.labels: false)
    width: WidthSpace = WidthSpace(choices=[16, 32, 64, 128, 256, 512, 800])
    # The recipe as search dimensions (null: training's value for every trial). A trial's
    # scratch twin is trained with the same recipe, so a gain never compares two recipes.
    learning_rate: FloatRange | None = None
    epochs: EpochSpace | None = None
    # The distillation method as a categorical dimension (null: distillation.method for every trial),
    # each method's own parameters searched under it (a conditional search space): `<method>`, that
    # method's search section (config/methods.py adds one field per method that has one).
    method: MethodSpace | None = None
    # The student's depth as a search dimension (null: student.depth for every trial): mlp layers,
    # cnn / separable blocks (training/depth.py).
    depth: EpochSpace | None = None


SearchConfig = with_method_sections(_SearchConfig, "Space")


def widths_searched(cfg) -> list[int]:
    """The widths a trial may suggest before the budget cuts them: the choices, or low and high
    (`cfg` a `StudyConfig`; not imported here, config.study imports this module)."""
    w = cfg.search.width
    return list(w.choices) if w.choices is not None else [w.low, w.high]


@dataclass(frozen=True)
class PrunerConfig:
    type: str = "median"
    n_startup_trials: int = 4
    n_warmup_steps: int = 1


@dataclass(frozen=True)
class HeartbeatConfig:
    interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 30  # a trial silent this long is failed and retried


def check_search(cfg, fail) -> None:
    """The search space: alpha against transfer.labels, the ranges, the widths."""
    sp = cfg.search
    if cfg.transfer.labels and sp.alpha is None:
        fail("search.alpha", "null (alpha fixed at 0) needs transfer.labels: false; to fix alpha, "
                             "give {low: a, high: a}")
    if not cfg.transfer.labels and sp.alpha is not None:
        fail("search.alpha", "transfer.labels: false trains on soft targets only (alpha is 0): "
                             "set search.alpha: null")
    for name, r in (("temperature", sp.temperature), ("alpha", sp.alpha or FloatRange(0.0, 0.0))):
        if r.low > r.high:
            fail(f"search.{name}", f"low ({r.low:g}) is greater than high ({r.high:g})")
    if sp.learning_rate is not None:
        if not 0 < sp.learning_rate.low <= sp.learning_rate.high:
            fail("search.learning_rate", "needs 0 < low <= high")
    if sp.epochs is not None and any(e < 1 for e in sp.epochs.choices):
        fail("search.epochs.choices", "every epoch count must be at least 1")
    if sp.depth is not None and (not sp.depth.choices or any(d < 1 for d in sp.depth.choices)):
        fail("search.depth.choices", "give one or more depths, each at least 1")
    if sp.temperature.low <= 0:
        fail("search.temperature.low", "temperature must be greater than 0")
    if sp.alpha is not None and (sp.alpha.low < 0 or sp.alpha.high > 1):
        fail("search.alpha", "alpha must lie in [0, 1]")
    w = sp.width
    if w.choices is not None:
        if w.low is not None or w.high is not None:
            fail("search.width", "give either choices or low/high, not both")
        if any(c < 1 for c in w.choices):
            fail("search.width.choices", "every width must be at least 1")
    else:
        if w.low is None or w.high is None:
            fail("search.width", "give choices, or both low and high")
        if w.low < 1:
            fail("search.width.low", "width must be at least 1")
        if w.low > w.high:
            fail("search.width", f"low ({w.low}) is greater than high ({w.high})")


def check_objectives(cfg, fail) -> None:
    """The objectives, the parameter budget, the pruner, the trial count and the heartbeat."""
    if not cfg.objectives or any(o not in OBJECTIVES for o in cfg.objectives) \
            or cfg.objectives[0] != "val_accuracy" or len(set(cfg.objectives)) != len(cfg.objectives) \
            or len(cfg.objectives) > 2:
        fail("objectives", "allowed: [val_accuracy], or [val_accuracy, X] with X one of params, latency_ms, "
             "size_bytes")
    if cfg.max_params is not None and cfg.max_params < 1:
        fail("max_params", "must be at least 1 (or null)")
    if cfg.pruner.type not in PRUNERS:
        fail("pruner.type", f"unknown pruner {cfg.pruner.type!r}; allowed: {', '.join(PRUNERS)}")
    if cfg.n_trials < 1:
        fail("n_trials", "must be at least 1")
    if cfg.heartbeat.interval < 1 or cfg.heartbeat.grace_period <= cfg.heartbeat.interval:
        fail("heartbeat", "interval must be at least 1 s and grace_period longer than interval")
