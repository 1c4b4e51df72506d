"""Confirmation over seeds: the interval arithmetic, the pairing, the fidelity metrics."""

import dataclasses
import math

import numpy as np
import pytest

from harness.confirm import confirmation as confirm, stats
from harness.data import evaluate


def test_student_t_interval_matches_a_hand_computed_case():
    # values 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445
    ci = stats.mean_ci([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)  # 1.963243
    assert ci.mean == 3 and ci.n == 5
    assert ci.half_width == pytest.approx(half, abs=1e-5)
    assert (ci.low, ci.high) == pytest.approx((3 - half, 3 + half), abs=1e-5)
    assert ci.excludes_zero


def test_paired_gain_uses_the_differences_not_the_arms():
    # Each arm spreads widely across seeds, but distilled is always 0.01 above scratch:
    # unpaired arms overlap; the paired gain is exactly 0.01 with zero width.
    scratch = [0.80, 0.85, 0.90]
    distilled = [0.81, 0.86, 0.91]
    gain = stats.paired_gain(distilled, scratch)
    assert gain.mean == pytest.approx(0.01) and gain.half_width == pytest.approx(0.0, abs=1e-12)
    assert gain.excludes_zero
    assert not stats.paired_gain([0.81, 0.84, 0.91], scratch).excludes_zero  # +1, -1, +1 points
    with pytest.raises(ValueError, match="unpaired"):
        stats.paired_gain([0.8, 0.9], scratch)


def test_one_seed_gives_no_interval():
    ci = stats.mean_ci([0.9])
    assert math.isinf(ci.half_width) and not ci.excludes_zero


def test_expected_calibration_error_by_hand():
    # Two examples in the (0.6, 0.6667] bin (confidence 0.6 each, one right: acc 0.5 -> gap 0.1),
    # two in the top bin (confidence 1.0, both right -> gap 0). ECE = 2/4 * 0.1 = 0.05.
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 1])
    assert evaluate.ece(probs, labels, bins=15) == pytest.approx(0.05)


def test_every_reported_ece_uses_the_documented_15_bins():
    """The README's ECE is 15-bin. Confidences 0.62 (right) and 0.68 (wrong) share a bin of 10,
    (0.6, 0.7], but not of 15: (0.6, 0.667] and (0.667, 0.733]."""
    probs = np.array([[0.62, 0.38], [0.68, 0.32]])
    labels = np.array([0, 1])
    fifteen = 0.5 * (1 - 0.62) + 0.5 * 0.68  # 0.53; with 10 bins: |0.5 - 0.65| = 0.15
    assert evaluate.ece(probs, labels) == pytest.approx(fifteen)
    assert evaluate.ece(probs, labels, bins=10) == pytest.approx(0.15)
    assert evaluate.fidelity(np.log(probs), labels, probs)["ece"] == pytest.approx(fifteen)
    # and no caller (the teacher's ECE in study.py, fidelity) asks for other bins than the default
    import ast
    from pathlib import Path

    import harness

    calls = []
    for path in Path(harness.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "ece":
                calls.append(path.name)
                assert len(node.args) == 2 and not node.keywords, f"{path}:{node.lineno}: ece with its own bins"
    assert sorted(calls) == ["evaluate.py", "study.py"]


def test_agreement_and_kl_against_the_teacher():
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    same = np.log(teacher)
    assert evaluate.agreement(same, teacher) == 1.0
    assert evaluate.kl_teacher_student(teacher, same) == pytest.approx(0.0, abs=1e-12)
    other = np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    assert evaluate.agreement(other, teacher) == 0.5
    assert evaluate.kl_teacher_student(teacher, other) > 0.5
    pc = evaluate.per_class_accuracy(other, np.array([1, 0]), 3)
    assert pc[:2] == [0.0, 1.0] and np.isnan(pc[2])


def _row(trial, seed, role, val, test, params=100):
    return confirm.Row(trial, 16, params, 2.0, 0.5, seed, role, val, test, 0.9, 0.02, 0.1)


def test_summary_pairs_runs_by_seed_and_says_what_is_significant():
    rows = []
    for seed, (d, s) in enumerate([(0.86, 0.85), (0.87, 0.855), (0.88, 0.87)], start=1):
        rows += [_row(7, seed, "distilled", d, d), _row(7, seed, "scratch", s, s)]
    (c,) = confirm.summarise(rows)
    assert (c.trial, c.n) == (7, 3)
    assert c.test_gain.mean == pytest.approx(np.mean([0.01, 0.015, 0.01]))
    assert c.test_gain.excludes_zero and confirm.verdict(c) == "significant gain"
    assert "significant gain" in confirm.table([c], 0.92, 0.01)
    assert confirm.Confirmed.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="pair"):
        confirm.summarise(rows[:-1] + [_row(7, 9, "scratch", 0.8, 0.8)])


# A scratch twin's file as every version of the harness has written it (key order included).
TWIN_FILE = {"width": 16, "seed": 1, "val_accuracy": 0.7, "test_accuracy": 0.69, "agreement": 0.8, "kl": 0.3,
             "ece": 0.05, "params": 13002, "flops": 12800, "epochs": 2, "learning_rate": 0.002, "mlflow_run_id": "r1"}
OMITTED = {"omitted_accuracy": 0.0, "corrected_accuracy": 0.7, "corrected_omitted_accuracy": 0.1, "bias_shift": 2.5}


@pytest.mark.parametrize("stored", [TWIN_FILE, {**TWIN_FILE, **OMITTED}])
def test_a_twin_file_reads_back_as_one_run_result_and_writes_the_same_keys(stored):
    import json

    from harness.training.run import RunResult
    run = RunResult.from_dict(json.loads(json.dumps(stored)))
    assert json.dumps(run.to_dict()) == json.dumps(stored)
    assert (run.val_accuracy, run.test_accuracy, run.params) == (0.7, 0.69, 13002)
    assert run.omitted == {k: v for k, v in stored.items() if k in OMITTED}


def test_a_confirmation_row_is_built_from_the_run_result_alike_for_both_arms():
    from harness.distill.methods import Method
    from harness.record import TrialRecord
    from harness.training.run import RunResult
    run = RunResult.from_dict({**TWIN_FILE, **OMITTED})
    r = TrialRecord(number=4, width=16, temperature=3.0, alpha=0.4)
    row = confirm.Row.of(run, r, Method("kd", 3.0, 0.4), "scratch", "a", 900)
    assert row == confirm.Row(4, 16, 13002, 3.0, 0.4, 1, "scratch", 0.7, 0.69, 0.8, 0.05, 0.3, "a", 900, **OMITTED)
    dkd = Method("dkd", 3.0, 0.4)
    assert confirm.Row.of(run, r, dkd, "distilled", "", 900) == dataclasses.replace(
        row, role="distilled", arm="", method=dkd.label())


def test_confirm_seeds_are_fresh_ones():
    from harness import config

    cfg = config.parse({"name": "t", "seed": 3, "confirm": {"seeds": 4}})
    assert confirm.seeds(cfg) == [4, 5, 6, 7] and cfg.seed not in confirm.seeds(cfg)
    with pytest.raises(config.ConfigError, match="confirm.seeds"):
        config.parse({"name": "t", "confirm": {"seeds": 1}})


def test_a_distilled_student_and_its_twin_start_alike_and_see_the_same_batches(small_splits, tmp_path):
    """The pairing: same initial weights, same batches in the same order; only the targets differ."""
    from harness import config
    from harness.search import stores
    from harness.training.context import Context
    from harness.teacher.trained import Teacher

    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}})
    logits = np.random.default_rng(0).normal(size=(len(small_splits.transfer), 10)).astype(np.float32)
    teacher = Teacher([], logits, 0.0, 0.0, "k", tmp_path, from_cache=True)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), small_splits, teacher, "0", "parent")
    s1, distilled = ctx.inputs(32, seed=5)
    s2, scratch = ctx.inputs(32, seed=5, distilled=False)
    for a, b in zip(s1.get_weights(), s2.get_weights()):
        np.testing.assert_array_equal(a, b)
    for (xd, yd), (xs, ys) in zip(distilled.take(5), scratch.take(5)):
        np.testing.assert_array_equal(xd.numpy(), xs.numpy())
        np.testing.assert_array_equal(yd["labels"].numpy(), ys.numpy())
    s3, other = ctx.inputs(32, seed=6, distilled=False)
    assert not np.array_equal(next(iter(other))[1].numpy(), next(iter(scratch))[1].numpy())
    assert not np.array_equal(s3.get_weights()[0], s1.get_weights()[0])


def test_arms_are_summarised_apart_and_compared_with_each_other_by_seed(tmp_path):
    """Several distilled arms of one configuration: each paired with its own twin, and the later
    arm minus the earlier one, seed by seed (the patient study's question)."""
    rows = []
    for seed in (1, 2, 3):
        rows += [confirm.Row(4, 8, 7000, 2.0, 0.1, seed, "distilled", 0.80, 0.80 + 0.001 * seed, 0.9, 0.02, 0.1,
                             "cached"),
                 confirm.Row(4, 8, 7000, 2.0, 0.1, seed, "scratch", 0.79, 0.79, 0.9, 0.02, 0.1, "cached"),
                 confirm.Row(4, 8, 7000, 2.0, 0.1, seed, "distilled", 0.82, 0.82 + 0.001 * seed, 0.9, 0.02, 0.1,
                             "online"),
                 confirm.Row(4, 8, 7000, 2.0, 0.1, seed, "scratch", 0.80, 0.80, 0.9, 0.02, 0.1, "online")]
    cached, online = confirm.summarise(rows)
    assert (cached.arm, online.arm) == ("cached", "online")
    assert cached.test_gain.mean == pytest.approx(0.012) and online.test_gain.mean == pytest.approx(0.022)
    (between,) = confirm.between_arms(rows)
    assert (between["arm"], between["minus"]) == ("online", "cached")
    assert between["test_gain"].mean == pytest.approx(0.02) and between["test_gain"].excludes_zero
    text = confirm.table([cached, online], 0.93, 0.01, [between])
    assert "online - cached" in text and "online" in text.splitlines()[3]
    confirm.write_csv(rows, tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().splitlines()[0].endswith(",ece,arm")
    confirm.write_csv([r for r in rows if r.arm == "cached"][:2], tmp_path / "one.csv")
    assert (tmp_path / "one.csv").read_text().splitlines()[0].endswith(",ece,arm")
    one = [dataclasses.replace(r, arm="") for r in rows[:2]]
    confirm.write_csv(one, tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text().splitlines()[0].endswith(",agreement,ece")


def test_an_arm_with_jitter_and_a_cached_teacher_is_refused():
    from harness import config

    ok = config.parse({"name": "t", "confirm": {"seeds": 2, "arms": [{"name": "a"},
                                                                    {"name": "b", "teacher": "online", "jitter": 1}]}})
    assert [a.name for a in ok.confirm.arms] == ["a", "b"]
    with pytest.raises(config.ConfigError, match=r"confirm.arms\[0\].teacher.*online"):
        config.parse({"name": "t", "confirm": {"arms": [{"name": "a", "jitter": 2}]}})
    with pytest.raises(config.ConfigError, match=r"confirm.arms\[1\].name"):
        config.parse({"name": "t", "confirm": {"arms": [{"name": "a"}, {"name": "a", "teacher": "online"}]}})


def test_an_arm_trains_as_it_says(small_splits, tmp_path):
    from harness import config
    from harness.search import stores
    from harness.training import twin
    from harness.training.context import Context
    from harness.teacher.trained import Teacher

    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}})
    logits = np.zeros((len(small_splits.transfer), 10), np.float32)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), small_splits, Teacher([], logits, 0.0, 0.0, "k", tmp_path,
                                                                            from_cache=True), "0", "parent")
    arm = ctx.for_arm(config.ArmConfig("online", "online", 2))
    assert arm.online and arm.cfg.student.augment.jitter == 2 and not ctx.online
    # its twin is jittered too
    assert twin.key(arm.cfg, 32, 1, data="d") != twin.key(ctx.cfg, 32, 1, data="d")
    _, online = arm.inputs(32, 1)
    _, plain = ctx.inputs(32, 1, distilled=False)
    (xo, yo), (xp, yp) = next(iter(online)), next(iter(plain))
    assert not isinstance(yo, dict)  # labels only: the teacher runs in the step
    np.testing.assert_array_equal(yo.numpy(), yp.numpy())  # same order
    assert not np.array_equal(xo.numpy(), xp.numpy())  # but jittered
    assert ctx.for_arm(config.ArmConfig("same")) is ctx  # the file's own settings: its compiled models too


def test_equal_width_ties_on_the_front_are_confirmed_once():
    import optuna

    from harness import config
    from harness.record import TrialRecord

    cfg = config.parse({"name": "t", "objectives": ["val_accuracy", "params"]})
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"temperature": optuna.distributions.FloatDistribution(1, 20),
            "alpha": optuna.distributions.FloatDistribution(0, 1),
            "width": optuna.distributions.CategoricalDistribution([16, 32])}
    for width, acc, params, t in [(32, 0.88, 200, 2.0), (16, 0.85, 100, 3.0), (16, 0.85, 100, 5.0)]:
        record = TrialRecord(val_accuracy=acc, params=params, model_path="m.keras")
        study.add_trial(optuna.trial.create_trial(params={"temperature": t, "alpha": 0.5, "width": width},
                                                  distributions=dist, values=[acc, params],
                                                  user_attrs=record.to_attrs()))
    assert len(study.best_trials) == 3  # the two width-16 trials tie on the front
    picked = confirm.configurations(study, cfg)
    assert [(r.width, r.number) for r in picked] == [(16, 1), (32, 0)]  # the first of the tie, by size
