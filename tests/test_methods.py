"""DKD and logit standardization: each loss against an independent float64 NumPy computation (as the
reference implementations write it), DKD against the identity of its paper, the warm-up in a
compiled `fit`, and the method's bad input."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from harness import config
from harness.distill.losses import distillation_loss, dkd_loss, dkd_terms, logit_std_loss, standardize


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _kl(p_log, q_log):
    with np.errstate(invalid="ignore"):  # -inf - -inf where the target class is removed: masked
        return np.sum(np.where(np.isinf(p_log), 0.0, np.exp(p_log) * (p_log - q_log)), axis=-1)


def _hard(labels, s):
    return -np.mean(_log_softmax(s)[np.arange(len(labels)), labels])


def numpy_dkd(labels, s, t, temperature, alpha, a, b, epoch=1, warmup=0):
    """mdistiller's dkd_loss in float64: binary (target, rest) probabilities, then the non-target
    softmax with the target class removed (exactly, not by mdistiller's -1000 shift)."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    gt = np.eye(s.shape[1], dtype=bool)[labels]
    p, q = _softmax(t / temperature), _softmax(s / temperature)
    bp = np.stack([p[gt], np.where(gt, 0, p).sum(1)], 1)
    bq = np.stack([q[gt], np.where(gt, 0, q).sum(1)], 1)
    tckd = np.sum(bp * (np.log(bp) - np.log(bq)), axis=1)
    lp = _log_softmax(np.where(gt, -np.inf, t / temperature))
    lq = _log_softmax(np.where(gt, -np.inf, s / temperature))
    nckd = _kl(lp, np.where(gt, 0.0, lq))
    warm = min(epoch / warmup, 1.0) if warmup > 0 else 1.0
    soft = warm * temperature ** 2 * np.mean(a * tckd + b * nckd)
    hard = _hard(labels, s)
    return alpha * hard + (1 - alpha) * soft, hard, soft


def numpy_logit_std(labels, s, t, temperature, alpha, weight):
    """sunshangquan/logit-standardization-KD's kd_loss(logit_stand=True): torch's std is n - 1."""
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)

    def z(x):
        return (x - x.mean(-1, keepdims=True)) / (1e-7 + x.std(-1, ddof=1, keepdims=True))

    soft = weight * temperature ** 2 * np.mean(_kl(_log_softmax(z(t) / temperature), _log_softmax(z(s) / temperature)))
    hard = _hard(labels, s)
    return alpha * hard + (1 - alpha) * soft, hard, soft


def _logits(seed, scale, batch=64, classes=10):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, batch)
    if scale == "large":  # up to +-80: the teacher's target far ahead or far behind
        s = rng.uniform(-80, 80, (batch, classes))
        t = rng.uniform(-80, 80, (batch, classes))
    else:
        s, t = rng.normal(0, scale, (batch, classes)), rng.normal(0, scale, (batch, classes))
    return labels, s.astype(np.float32), t.astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 4.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_numpy(scale, temperature):
    labels, s, t = _logits(1, scale)
    for a, b, epoch, warmup in ((1.0, 8.0, 1, 0), (0.5, 2.0, 1, 3), (2.0, 0.0, 5, 3)):
        got = [float(v) for v in dkd_loss(labels, s, t, temperature, 0.3, a, b, epoch, warmup)]
        want = numpy_dkd(labels, s, t, temperature, 0.3, a, b, epoch, warmup)
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 4.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 8.0])
def test_logit_std_matches_numpy(scale, temperature):
    labels, s, t = _logits(2, scale)
    got = [float(v) for v in logit_std_loss(labels, s, t, temperature, 0.1, 10.0)]
    np.testing.assert_allclose(got, numpy_logit_std(labels, s, t, temperature, 0.1, 10.0), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0, "large"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_identity_gives_back_kd(scale, temperature):
    """Zhao et al. 2022, Eq. 4: KL(p_T || p_S) = TCKD + (1 - p_t^T) NCKD per example. So with
    alpha = beta = 1, NCKD weighted by each example's teacher non-target mass gives back KD."""
    labels, s, t = _logits(3, scale)
    tckd, nckd, pt = (v.numpy().astype(np.float64) for v in dkd_terms(labels, s, t, temperature))
    _, _, kd_soft = distillation_loss(labels, s, t, temperature, 0.0)
    rebuilt = temperature ** 2 * np.mean(tckd + (1.0 - pt) * nckd)
    np.testing.assert_allclose(rebuilt, float(kd_soft), rtol=1e-4, atol=1e-5)
    # and unweighted (mdistiller's alpha = beta = 1) it is not KD unless p_t^T is 0
    _, _, dkd11 = dkd_loss(labels, s, t, temperature, 0.0, 1.0, 1.0)
    assert float(dkd11) >= float(kd_soft) - 1e-5
    if scale == 1.0:
        assert float(dkd11) > float(kd_soft) * 1.01


def test_extreme_logits_give_finite_losses_and_gradients():
    rng = np.random.default_rng(4)
    s = tf.Variable(rng.uniform(-1e4, 1e4, (32, 10)).astype(np.float32))
    t = rng.uniform(-1e4, 1e4, (3, 32, 10)).astype(np.float32)  # an ensemble too
    labels = rng.integers(0, 10, 32)
    for loss in (lambda: dkd_loss(labels, s, t, 1.0, 0.5, 1.0, 8.0), lambda: logit_std_loss(labels, s, t, 2.0, 0.5, 9.0)):
        with tf.GradientTape() as tape:
            total, hard, soft = loss()
        assert all(np.isfinite(float(v)) for v in (total, hard, soft)) and float(soft) >= -1e-4
        assert np.all(np.isfinite(tape.gradient(total, s).numpy()))


def test_bfloat16_logits_are_scored_in_float32():
    labels, s, t = _logits(5, 3.0)
    for loss in (lambda x: dkd_loss(labels, x, t, 4.0, 0.5, 1.0, 8.0), lambda x: logit_std_loss(labels, x, t, 2.0, 0.5, 9.0)):
        out = loss(tf.cast(s, tf.bfloat16))
        assert all(v.dtype == tf.float32 for v in out)


def test_standardize_is_a_per_example_z_score_with_n_minus_1():
    x = np.array([[1.0, 2.0, 3.0, 10.0]], np.float32)
    want = (x - x.mean()) / (1e-7 + x.std(ddof=1))
    np.testing.assert_allclose(standardize(x).numpy(), want, rtol=1e-6)
    # invariant to the logits' scale and shift: what makes it "standardization"
    np.testing.assert_allclose(standardize(3 * x + 5).numpy(), standardize(x).numpy(), rtol=1e-5)


def test_dkd_warmup_follows_the_epoch_inside_one_compiled_step():
    """The warm-up factor comes from the optimizer's step count: with the weights frozen (learning
    rate 0), the soft term of epoch 1 is half that of epochs 2 and 3 (warmup 2), in one `fit`."""
    import keras

    from harness.distill.distiller import Distiller
    from harness.distill.methods import Method

    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = {"labels": rng.integers(0, 10, 40), "teacher_logits": rng.normal(0, 3, (40, 10)).astype(np.float32)}
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    d = Distiller(student, method="dkd", steps_per_epoch=4)
    d.set_method(Method("dkd", 4.0, 0.5, dkd_alpha=1.0, dkd_beta=8.0, dkd_warmup=2), steps_per_epoch=4)
    d.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=True, steps_per_execution=2)
    hist = d.fit(x, y, batch_size=10, epochs=3, verbose=0, shuffle=False).history
    want = float(dkd_loss(y["labels"], student(x), y["teacher_logits"], 4.0, 0.5, 1.0, 8.0)[2])
    np.testing.assert_allclose(hist["soft_loss"], [want / 2, want, want], rtol=1e-4)
    with pytest.raises(ValueError, match="compiled for dkd"):
        d.set_method(Method("kd", 4.0, 0.5))


def test_an_arm_takes_its_method_and_parameters_else_the_trials():
    from harness.distill.methods import Method, for_arm

    from harness.distill.methods import get

    trial = Method("dkd", 3.0, 0.4, dkd_alpha=1.0, dkd_beta=2.0, dkd_warmup=2)
    d = config.DistillationConfig(method="dkd", dkd=get("dkd").Config(beta=5.0))
    assert for_arm(trial, None, d) == trial
    assert for_arm(trial, config.ArmConfig("a", temperature=6.0), d) == Method("dkd", 6.0, 0.4, dkd_alpha=1.0,
                                                                                dkd_beta=2.0, dkd_warmup=2)
    assert for_arm(trial, config.ArmConfig("k", method="kd"), d).own() == {}
    lsd = for_arm(trial, config.ArmConfig("l", method="logit_std", logit_std=get("logit_std").Config(9.0)), d)
    assert (lsd.name, lsd.temperature, lsd.alpha, lsd.own()) == ("logit_std", 3.0, 0.4, {"logit_std_weight": 9.0})
    kd_trial = Method("kd", 3.0, 0.4)  # a kd trial under a dkd arm: the file's dkd numbers
    assert for_arm(kd_trial, config.ArmConfig("d", method="dkd"), d).dkd_beta == 5.0
    assert Method("dkd", 1, 0, dkd_alpha=1.0, dkd_beta=1.0595, dkd_warmup=0).label() == "dkd(a=1, b=1.06, warmup=0)"


def test_methods_are_compared_with_kd_at_the_same_width_by_seed():
    from harness.confirm import confirmation as confirm
    from harness.confirm.methods import between_methods

    rows = []
    for seed in (1, 2, 3):
        for trial, method, acc in ((7, "", 0.80), (9, "dkd(a=1, b=8, warmup=0)", 0.81), (4, "logit_std(w=10)", 0.79)):
            rows += [confirm.Row(trial, 64, 50890, 4.0, 0.5, seed, "distilled", acc, acc + 0.001 * seed, 0.9, 0.02,
                                 0.1, method=method),
                     confirm.Row(trial, 64, 50890, 4.0, 0.5, seed, "scratch", 0.78, 0.78, 0.9, 0.02, 0.1, method=method)]
    rows.append(confirm.Row(2, 128, 9000, 4.0, 0.5, 1, "distilled", 0.8, 0.8, 0.9, 0.02, 0.1))  # kd alone
    dkd, lsd = between_methods(rows)
    assert (dkd["trial"], dkd["arm"], dkd["minus"]) == (9, "dkd(a=1, b=8, warmup=0)", "kd (trial 7)")
    assert dkd["test_gain"].mean == pytest.approx(0.01) and dkd["test_gain"].excludes_zero
    assert lsd["test_gain"].mean == pytest.approx(-0.01)
    summary = confirm.summarise([r for r in rows if r.width == 64])
    assert [c.method for c in summary] == ["logit_std(w=10)", "", "dkd(a=1, b=8, warmup=0)"]  # by trial
    text = confirm.table(summary, 0.93, 0.01, [dkd, lsd])
    assert " method " in text.splitlines()[1] and "dkd(a=1, b=8, warmup=0) - kd (trial 7)" in text


def test_the_default_study_is_kd_and_searching_the_method_is_another_study():
    """kd, neither set nor searched; a file that searches the method is not resumed as the default
    study (the fingerprint holds the search space and the distillation section, config/study.py)."""
    cfg = config.load("studies/fashion_mnist.yaml")
    assert cfg.methods == ["kd"] and cfg.distillation.method == "kd"
    assert config.study_fingerprint(cfg.to_dict())["distillation.method"] == "kd"
    searched = config.parse({**yaml.safe_load(Path("studies/fashion_mnist.yaml").read_text()),
                             "search": {"method": {"choices": ["kd", "dkd"]}}})
    assert searched.search_space_fingerprint() != cfg.search_space_fingerprint()


@pytest.fixture(scope="module")
def methods_smoke(tmp_path_factory, smoke_teacher_cache):
    """The smoke study with the method searched (kd, dkd, logit_std, DKD's and logit_std's own
    parameters under them), confirmed under two arms (the trial's method, and dkd at beta 4)."""
    from helpers import cli, workdir_with_teacher, write_study

    tmp = tmp_path_factory.mktemp("methods")
    workdir = workdir_with_teacher(tmp / "work", smoke_teacher_cache)
    study = write_study(tmp, name="methods_smoke", **{
        "search.method": {"choices": ["kd", "dkd", "logit_std"]},
        "search.dkd": {"beta": {"low": 1.0, "high": 8.0, "log": True}, "warmup": {"choices": [0, 2]}},
        "search.logit_std": {"weight": {"low": 1.0, "high": 10.0}},
        "search.width": {"choices": [16]}, "objectives": ["val_accuracy"], "n_trials": 3,
        "pruner": {"type": "none"},
        "confirm": {"seeds": 2, "arms": [{"name": "searched"}, {"name": "dkd4", "method": "dkd", "dkd": {"beta": 4.0}}]}})
    proc = cli("study", study, "--workdir", workdir, "--no-export")
    return workdir, study, proc.stdout + proc.stderr


def test_a_study_searches_the_method_and_confirms_each_at_its_best(methods_smoke):
    from helpers import cli, load_study, mlflow_client, runs_by_role

    from harness.record import TrialRecord, complete_records

    workdir, study_file, out = methods_smoke
    study = load_study(workdir, "methods_smoke")
    records = complete_records(study.trials)
    methods = [r.method for r in records]
    assert sorted(methods) == ["dkd", "kd", "logit_std"], methods  # equal shares
    for t in study.trials:  # a conditional space: a method's own parameters only under it
        r = TrialRecord.from_trial(t)
        assert ("dkd_beta" in t.params) == ("dkd_warmup" in t.params) == (r.method == "dkd")
        assert ("logit_std_weight" in t.params) == (r.method == "logit_std")
        assert t.user_attrs.get("fixed_dkd_alpha") == (1.0 if r.method == "dkd" else None)  # not searched: fixed
    trial_runs = runs_by_role(mlflow_client(workdir), "methods_smoke")["trial"]
    assert {r.data.params.get("method") for r in trial_runs} == {"kd", "dkd", "logit_std"}
    # one configuration per method (width 16), each under both arms, each method compared with kd
    confirmed = study.user_attrs["confirmed"]
    searched = [c for c in confirmed if c["arm"] == "searched"]
    assert sorted(c["method"].split("(")[0] or "kd" for c in searched) == ["dkd", "kd", "logit_std"]
    dkd4 = [c for c in confirmed if c["arm"] == "dkd4"]  # the same three configurations as dkd at beta 4
    assert len(dkd4) == 3 and all(c["method"].startswith("dkd(a=1, b=4") for c in dkd4)
    assert len({str(c["scratch_test"]) for c in confirmed}) == 1  # one scratch twin per seed for every method
    pairs = {(d["arm"].split("(")[0], d["minus"].split(" ")[0]) for d in study.user_attrs["between_arms"]}
    assert {("dkd4", "searched"), ("dkd", "kd"), ("logit_std", "kd")} <= pairs
    assert "- kd (trial" in out and " method " in out
    report = cli("report", study_file, "--workdir", workdir).stdout
    assert "method" in report and "dkd(a=1" in report and "logit_std(w=" in report
