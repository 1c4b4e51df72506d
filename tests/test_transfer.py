"""The `transfer:` section: the student's subset of the transfer set, omitted classes, soft targets
only, and the bias correction for omitted classes (chosen on validation, never on test)."""

import dataclasses

import numpy as np
import pytest

from harness import config
from harness.data import omitted, sources, transfer_set
from harness.search import stores
from harness.teacher.trained import Teacher, cache_key as teacher_key
from harness.training import twin
from harness.training.context import Context


def _context(splits, tmp_path, **transfer):
    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}, "transfer": transfer})
    # Each example's cached "logits" hold its own position in the transfer split, so a batch can
    # be checked against the arrays it must come from.
    logits = np.zeros((len(splits.transfer), 10), np.float32)
    logits[:, 0] = np.arange(len(splits.transfer))
    teacher = Teacher([], logits, 0.0, 0.0, "k", tmp_path, from_cache=True)
    return Context(cfg, stores.Workspace.resolve(tmp_path), splits, teacher, "0", "parent")


def test_the_subset_is_stratified_seeded_disjoint_and_the_right_size(small_splits):
    t, labels = small_splits.transfer, small_splits.transfer.labels
    cfg = config.TransferConfig(fraction=0.1)
    keep = transfer_set.transfer_positions(labels, cfg, seed=0)
    for k in range(10):
        assert np.sum(labels[keep] == k) == max(1, round(0.1 * np.sum(labels == k)))
    assert len(set(keep)) == len(keep) and np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(keep, transfer_set.transfer_positions(labels, cfg, seed=0))
    assert not np.array_equal(keep, transfer_set.transfer_positions(labels, cfg, seed=1))
    sub = transfer_set.subset(t, keep)
    for name in ("images", "labels", "index"):  # each example whole: its image, label and position
        np.testing.assert_array_equal(getattr(sub, name), getattr(t, name)[keep])
    assert len(transfer_set.transfer_positions(labels, config.TransferConfig(), seed=0)) == len(t)
    tiny = transfer_set.transfer_positions(labels, config.TransferConfig(fraction=0.001), seed=0)
    assert sorted(labels[tiny]) == list(range(10))  # at least one example of every class


def test_an_omitted_class_is_absent_from_every_batch_and_each_keeps_its_logits(small_splits, tmp_path):
    ctx = _context(small_splits, tmp_path, fraction=0.5, omit_classes=[3])
    full = _context(small_splits, tmp_path)
    assert ctx.splits.validation is small_splits.validation and ctx.splits.test is small_splits.test
    t = small_splits.transfer
    want = sum(max(1, round(0.5 * np.sum(t.labels == k))) for k in range(10) if k != 3)
    assert ctx.transfer_examples == want < full.transfer_examples == len(t)
    seen = 0
    for x, y in ctx.inputs(16, seed=1)[1]:
        pos = y["teacher_logits"].numpy()[:, 0].astype(int)
        assert 3 not in y["labels"].numpy()
        np.testing.assert_array_equal(y["labels"].numpy(), t.labels[pos])
        np.testing.assert_array_equal(x.numpy(), t.images[pos].astype(np.float32))
        seen += len(pos)
    assert seen == want
    assert all(3 not in y.numpy() for _, y in ctx.inputs(16, seed=1, distilled=False)[1])  # the twin too
    # the teacher is the whole split's (its key ignores the transfer section); the twin's key does not
    assert teacher_key(ctx.cfg, "d") == teacher_key(full.cfg, "d")
    assert twin.key(ctx.cfg, 16, 1, data="d") != twin.key(full.cfg, 16, 1, data="d")


def test_an_arm_brings_its_own_transfer_set_and_epochs(small_splits, tmp_path):
    ctx = _context(small_splits, tmp_path)
    arm = ctx.for_arm(config.ArmConfig("p3", transfer=config.TransferConfig(fraction=0.03), epochs=40))
    assert arm.transfer_examples < ctx.transfer_examples and arm.cfg.training.epochs == 40
    assert twin.key(arm.cfg, 16, 1, data="d") != twin.key(ctx.cfg, 16, 1, data="d")
    assert ctx.for_arm(config.ArmConfig("full")) is ctx
    soft = dataclasses.replace(ctx.cfg, transfer=config.TransferConfig(labels=False))
    # a twin learns from hard labels anyway
    assert twin.key(soft, 16, 1, data="d") == twin.key(ctx.cfg, 16, 1, data="d")


def _identity_logits_model():
    import keras

    inputs = keras.Input(shape=(3,))
    layer = keras.layers.Dense(3, name="logits", kernel_initializer="identity", bias_initializer="zeros")
    return keras.Model(inputs, layer(inputs))


def _split(rows):
    x = np.array([r[0] for r in rows], np.float32)
    return sources.Split(x, np.array([r[1] for r in rows], np.int64), np.arange(len(rows)))


def test_the_bias_correction_is_chosen_on_validation_only():
    """Class 1 is omitted. On validation a shift in (1.5, 2.5) is best; on test one in (4, 5)
    would be. The correction must take validation's, and test must only report what it gives."""
    val = _split([([0, -1.5, -9], 1)] * 10 + [([0, -2.5, -9], 0)] * 5)
    test = _split([([0, -4.0, -9], 1)] * 10 + [([0, -5.0, -9], 0)] * 5)
    splits = sources.Splits(val, val, test, num_classes=3, image_shape=(3,), dataset="toy")
    assert 4.0 < omitted.choose_shift(test.images, test.labels, [1]) < 5.0  # what test would have picked
    model = _identity_logits_model()
    fix = omitted.correct(model, splits, [1])
    assert fix.shift == pytest.approx(1.55)  # the smallest grid value above 1.5
    assert fix.before["omitted_class_test_accuracy"] == 0.0
    assert fix.after["corrected_omitted_class_test_accuracy"] == 0.0  # test's own best would have given 1.0
    assert fix.after["corrected_test_accuracy_class_0"] == 1.0 and "corrected_test_accuracy_class_2" in fix.after
    fixed = omitted.corrected_model(model, [1], fix.shift)
    got = fixed.predict(test.images, verbose=0)
    np.testing.assert_allclose(got, omitted.shifted(test.images, [1], fix.shift), atol=1e-6)
    np.testing.assert_allclose(model.predict(test.images, verbose=0), test.images, atol=1e-6)  # original intact


def test_soft_targets_only_fix_alpha_at_zero_outside_the_search_space():
    import optuna

    from harness.record import TrialRecord
    from harness.search import space

    cfg = config.parse({"name": "t", "transfer": {"labels": False}, "search": {"alpha": None},
                        "student": {"family": "mlp"}})
    study = optuna.create_study()
    trial = study.ask()
    p = space.suggest(trial, cfg, (28, 28, 1), 10)
    assert p["alpha"] == 0.0 and "alpha" not in trial.params
    study.tell(trial, 0.5)
    assert TrialRecord.from_trial(study.trials[0]).alpha == 0.0


BAD = {
    "fraction_zero": ({"transfer": {"fraction": 0.0}}, "transfer.fraction"),
    "fraction_above_one": ({"transfer": {"fraction": 1.5}}, "transfer.fraction"),
    "soft_only_with_alpha_searched": ({"transfer": {"labels": False}}, "search.alpha"),
    "alpha_null_with_labels": ({"search": {"alpha": None}}, "search.alpha"),
    "repeated_class": ({"transfer": {"omit_classes": [3, 3]}}, "transfer.omit_classes"),
    "arm_fraction": ({"confirm": {"arms": [{"name": "a", "transfer": {"fraction": 2.0}}]}},
                     "confirm.arms[0].transfer.fraction"),
    "arm_labels_differ": ({"confirm": {"arms": [{"name": "a", "transfer": {"labels": False}}]}},
                          "confirm.arms[0].transfer.labels"),
    "reference_not_an_arm": ({"confirm": {"arms": [{"name": "a"}], "reference": "b"}}, "confirm.reference"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_transfer_combination_is_refused(case):
    overrides, field = BAD[case]
    with pytest.raises(config.ConfigError) as e:
        config.parse({"name": "t", **overrides}, "s.yaml")
    assert e.value.field == field and str(e.value).startswith("s.yaml: ")


def test_omitting_every_class_or_an_unknown_one_is_refused_once_the_classes_are_known():
    every = config.parse({"name": "t", "transfer": {"omit_classes": list(range(10))}}, "s.yaml")
    with pytest.raises(config.ConfigError, match="transfer.omit_classes: omits every one"):
        config.check_classes(every, 10)
    with pytest.raises(config.ConfigError, match=r"confirm.arms\[0\].transfer.omit_classes"):
        config.check_classes(config.parse({"name": "t", "confirm": {"arms": [
            {"name": "a", "transfer": {"omit_classes": [10]}}]}}), 10)
    config.check_classes(dataclasses.replace(every, transfer=config.TransferConfig(omit_classes=[9])), 10)


def test_every_arm_is_measured_against_the_reference_arms_scratch_twin_seed_by_seed():
    from harness.confirm import confirmation as confirm, reference

    rows = []
    for seed in (1, 2, 3):
        for arm, d, s in (("p1", 0.80, 0.78), ("full", 0.885, 0.88)):
            rows += [confirm.Row(3, 128, 118282, 1.0, 0.0, seed, "distilled", d, d + 0.001 * seed, 0.9, 0.02, 0.1, arm),
                     confirm.Row(3, 128, 118282, 1.0, 0.0, seed, "scratch", s, s, 0.9, 0.02, 0.1, arm)]
    got = {(d["arm"], d["role"]): d["test_gain"] for d in reference.against_reference(rows, "full")}
    assert set(got) == {("p1", "distilled"), ("p1", "scratch"), ("full", "distilled")}
    assert got[("p1", "distilled")].mean == pytest.approx(0.80 + 0.002 - 0.88)
    assert got[("p1", "scratch")].mean == pytest.approx(-0.10) and got[("p1", "scratch")].excludes_zero
    assert "p1 distilled - full scratch" in "\n".join(reference.lines(reference.against_reference(rows, "full")))
    assert reference.against_reference(rows, None) == []
