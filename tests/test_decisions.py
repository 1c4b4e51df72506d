"""Where the harness decides: the champion rule, the width budget, the pruner, the trial count."""

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
    if expected is optuna.pruners.MedianPruner:
        assert got._n_startup_trials == 7


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


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_file_is_valid(path):
    cfg = config.load(path)
    assert cfg.name == path.stem  # the MLflow experiment and Optuna study are named after the file
