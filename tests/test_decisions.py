"""Where the harness decides: the champion rule, the width budget, the pruner, the trial count."""

import dataclasses
from types import SimpleNamespace

import optuna
import pytest
from helpers import ROOT

from harness import config
from harness.config import ChampionConfig, ConfigError
from harness.deploy import champion
from harness.record import TrialRecord
from harness.search import space, stores

SHAPE, CLASSES = (28, 28, 1), 10


def cand(name, val, params):
    return SimpleNamespace(name=name, val_accuracy=val, params=params)


def test_best_rule_takes_the_most_accurate_and_the_smaller_on_a_tie():
    cs = [cand("a", 0.90, 100), cand("b", 0.92, 500), cand("c", 0.92, 300)]
    assert champion.select(cs, ChampionConfig(rule="best")).name == "c"


def test_smallest_within_tolerance_changes_the_pick():
    cs = [cand("big", 0.900, 1000), cand("mid", 0.897, 300), cand("small", 0.880, 50)]
    assert champion.select(cs, ChampionConfig("smallest_within", tolerance=0.0)).name == "big"
    assert champion.select(cs, ChampionConfig("smallest_within", tolerance=0.5)).name == "mid"
    assert champion.select(cs, ChampionConfig("smallest_within", tolerance=2.0)).name == "small"


def test_smallest_within_breaks_a_size_tie_by_accuracy():
    cs = [cand("worse", 0.895, 300), cand("better", 0.899, 300), cand("best", 0.900, 900)]
    assert champion.select(cs, ChampionConfig("smallest_within", tolerance=0.5)).name == "better"


def test_no_candidate_no_champion():
    assert champion.select([], ChampionConfig()) is None


def _cfg(**over):
    base = {"name": "t", "search": {"width": {"low": 4, "high": 800}}, "objectives": ["val_accuracy"]}
    base.update(over)
    return config.parse(base, "t.yaml")


def mlp_params(width):  # 784*w + w + w*w + w + 10*w + 10: two hidden layers and the logits
    return 784 * width + width + width * width + width + 10 * width + 10


def test_budget_bisection_stops_exactly_at_the_boundary():
    budget = mlp_params(100)
    assert space.max_width_in_budget(_cfg(max_params=budget), SHAPE, CLASSES) == 100
    assert space.max_width_in_budget(_cfg(max_params=budget - 1), SHAPE, CLASSES) == 99
    assert space.max_width_in_budget(_cfg(max_params=None), SHAPE, CLASSES) == 800


def test_budget_filters_choices_and_refuses_when_nothing_fits():
    cfg = _cfg(search={"width": {"choices": [16, 64, 256]}}, max_params=mlp_params(64))
    assert space.allowed_widths(cfg, SHAPE, CLASSES) == [16, 64]
    tight = _cfg(search={"width": {"choices": [16, 64]}}, max_params=mlp_params(16) - 1)
    with pytest.raises(ConfigError, match="max_params"):
        space.check_budget(tight, SHAPE, CLASSES)
    with pytest.raises(ConfigError, match="max_params"):
        space.check_budget(_cfg(max_params=mlp_params(4) - 1), SHAPE, CLASSES)


@pytest.mark.parametrize("objectives, pruner, expected", [
    (["val_accuracy", "params"], "median", optuna.pruners.NopPruner),  # Pareto search: never pruned
    (["val_accuracy"], "median", optuna.pruners.MedianPruner),
    (["val_accuracy"], "hyperband", optuna.pruners.HyperbandPruner),
    (["val_accuracy"], "successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    (["val_accuracy"], "none", optuna.pruners.NopPruner),
])
def test_pruner_follows_the_file(objectives, pruner, expected):
    cfg = _cfg(objectives=objectives, pruner={"type": pruner, "n_startup_trials": 7})
    got = stores.make_pruner(cfg)
    assert type(got) is expected


# Pruner settings a pruner type has no use for, with the reason. Every other (type, setting) pair must
# reach the pruner: a setting added to `PrunerConfig` later fails below until it reaches each pruner or
# is listed here.
IGNORED = {
    ("hyperband", "n_startup_trials"): "Optuna's HyperbandPruner takes no such argument",
    ("hyperband", "n_warmup_steps"): "Optuna's HyperbandPruner takes no such argument (min_resource is 1)",
    ("successive_halving", "n_startup_trials"): "Optuna's SuccessiveHalvingPruner takes no such argument",
    ("successive_halving", "n_warmup_steps"): "Optuna's SuccessiveHalvingPruner takes no such argument",
}


def _pruner_state(pruner):
    return {k: v for k, v in vars(pruner).items() if isinstance(v, (int, float, str, bool))}


@pytest.mark.parametrize("pruner", [p for p in config.PRUNERS if p != "none"])
def test_every_pruner_setting_reaches_the_pruner(pruner):
    base = {"type": pruner, "n_startup_trials": 3, "n_warmup_steps": 2}
    state = _pruner_state(stores.make_pruner(_cfg(pruner=base)))
    assert state  # the comparison below has something to compare
    for f in dataclasses.fields(config.PrunerConfig):
        if f.name == "type":
            continue
        changed = _pruner_state(stores.make_pruner(_cfg(pruner={**base, f.name: base[f.name] + 2})))
        if (pruner, f.name) in IGNORED:
            assert changed == state, f"{pruner} now uses {f.name}: take it off IGNORED"
        else:
            assert changed != state, f"pruner.{f.name} does not reach the {pruner} pruner"
    if pruner == "median":
        assert (state["_n_startup_trials"], state["_n_warmup_steps"]) == (3, 2)


def test_hyperband_spans_the_longest_run():
    def resource(**over):
        return stores.make_pruner(_cfg(pruner={"type": "hyperband"}, **over))._max_resource

    assert resource(training={"epochs": 7}) == 7
    assert resource(search={"width": {"low": 4, "high": 800}, "epochs": {"choices": [3, 12, 5]}}) == 12


def test_counted_trials_counts_finished_pruned_and_diverged_but_not_crashed():
    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    S = optuna.trial.TrialState

    def add(state, **attrs):
        study.add_trial(optuna.trial.create_trial(
            state=state, params={"x": 0.5}, distributions=dist, user_attrs=attrs,
            value=0.5 if state == S.COMPLETE else None,
            intermediate_values={0: 0.1} if state == S.PRUNED else None))

    add(S.COMPLETE)
    add(S.PRUNED)
    add(S.FAIL, **TrialRecord(diverged="loss became nan", fail_reason="loss became nan").to_attrs())
    add(S.FAIL, fail_reason="interrupted (Ctrl-C)")
    add(S.FAIL)  # a crash: killed before it could say anything
    assert stores.counted_trials(study) == 3


def test_trial_record_round_trips_through_optuna():
    study = optuna.create_study()
    trial = study.ask({"temperature": optuna.distributions.FloatDistribution(1, 20),
                       "alpha": optuna.distributions.FloatDistribution(0, 1),
                       "width": optuna.distributions.CategoricalDistribution([16, 32])})
    TrialRecord(val_accuracy=0.9, params=123, model_path="m.keras", epochs_run=2).save(trial)
    study.tell(trial, 0.9)
    r = TrialRecord.from_trial(study.trials[0])
    assert (r.val_accuracy, r.params, r.model_path, r.epochs_run, r.fail_reason) == (0.9, 123, "m.keras", 2, None)
    assert r.width in (16, 32) and 1 <= r.temperature <= 20 and r.number == 0 and r.complete
    assert set(study.trials[0].user_attrs) == {"val_accuracy", "params", "model_path", "epochs_run"}


def test_trial_record_keeps_falsy_values_through_optuna():
    """0, 0.0 and "" are values, not absence: a trial that ran 0 epochs says so (only None is absent)."""
    falsy = {"int | None": 0, "float | None": 0.0, "str | None": ""}
    stored = {f.name: falsy[f.type] for f in dataclasses.fields(TrialRecord)
              if f.name not in ("number", "own", *TrialRecord.SUGGESTED)}  # own: Optuna keeps it
    assert "epochs_run" in stored and "val_accuracy" in stored and "model_path" in stored
    study = optuna.create_study()
    trial = study.ask({"temperature": optuna.distributions.FloatDistribution(1, 20)})
    trial.set_user_attr("fixed_alpha", 0.0)  # alpha fixed by the file (transfer.labels: false)
    TrialRecord(**stored).save(trial)
    study.tell(trial, 0.0)
    r = TrialRecord.from_trial(study.trials[0])
    assert {k: getattr(r, k) for k in stored} == stored
    assert r.alpha == 0.0 and r.complete  # a complete trial, even at accuracy 0.0
    assert TrialRecord(diverged=False, fail_reason=[]).to_attrs() == {"diverged": False, "fail_reason": []}
    assert TrialRecord().to_attrs() == {}


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_is_valid(path):
    cfg = config.load(path)
    assert cfg.name == path.stem  # the MLflow experiment and Optuna study are named after the file
