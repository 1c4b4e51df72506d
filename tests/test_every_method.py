"""Every registered distillation method, by the same tests: its loss against an independent float64
NumPy reference, one run and a population by the same code, its study-file section and checks, its
MLflow params and label, one training step in a Distiller. A new method is tested by adding its
NumPy reference to `REFERENCES` (test_every_method_has_a_numpy_reference fails until it is)."""

import dataclasses

import keras
import numpy as np
import pytest
from test_losses import reference as numpy_kd
from test_methods import numpy_dkd, numpy_logit_std

from harness import config
from harness.distill import methods, models
from harness.distill.distiller import Distiller, make_optimizer
from harness.distill.methods import Method
from harness.distill.population import population_loss

# name -> f(labels, student, teacher, temperature, alpha, own) -> (total, hard, soft), float64 NumPy.
REFERENCES = {
    "kd": lambda labels, s, t, T, a, own: numpy_kd(labels, s, t, T, a),
    "dkd": lambda labels, s, t, T, a, own: numpy_dkd(labels, s, t, T, a, own["dkd_alpha"], own["dkd_beta"],
                                                     1, own["dkd_warmup"]),
    "logit_std": lambda labels, s, t, T, a, own: numpy_logit_std(labels, s, t, T, a, own["logit_std_weight"]),
    # fitnets' logit part is kd's (its hint term: tests/test_fitnets.py, with the features it needs).
    "fitnets": lambda labels, s, t, T, a, own: numpy_kd(labels, s, t, T, a),
}
NAMES = methods.names()


def _logits(seed, k=None, batch=32, classes=10):
    rng = np.random.default_rng(seed)
    lead = (k,) if k else ()
    return (rng.integers(0, classes, (*lead, batch)), rng.normal(0, 3, (*lead, batch, classes)).astype(np.float32),
            rng.normal(0, 3, (*lead, batch, classes)).astype(np.float32))


def _own(name, i=0):
    """The method's numeric own parameters, varied by member i (non-numbers as their defaults)."""
    return {k: (v * (1 + 0.5 * i) if isinstance(v, float) else v) for k, v in Method(name).own().items()}


def test_every_method_has_a_numpy_reference():
    assert set(REFERENCES) == set(NAMES)
    assert NAMES[0] == methods.DEFAULT


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_the_loss_matches_numpy(name, temperature):
    labels, s, t = _logits(3)
    own = _own(name)
    got = [float(v) for v in methods.get(name).loss(labels, s, t, temperature, 0.3, own)]
    np.testing.assert_allclose(got, REFERENCES[name](labels, s, t, temperature, 0.3, own), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_population_is_each_member_s_own_loss(name):
    """The same `loss` on [K, B, C] with per-member parameters [K] gives each member's lone value."""
    k = 3
    labels, s, t = _logits(4, k)
    temps, alphas = np.float32([1.0, 3.0, 8.0]), np.float32([0.0, 0.5, 0.9])
    owns = [_own(name, i) for i in range(k)]
    numeric = [key for key, v in owns[0].items() if isinstance(v, (int, float))]
    stacked = {key: np.float32([o[key] for o in owns]) for key in numeric}
    got = population_loss(labels, s, t, temps, alphas, methods.get(name), stacked)
    for m in range(k):
        want = methods.get(name).loss(labels[m], s[m], t[m], temps[m], alphas[m], owns[m])
        for g, w in zip(got, want):
            assert float(g[m]) == pytest.approx(float(w), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_the_study_file_section_belongs_to_its_method(name):
    spec = methods.get(name)
    cfg = config.parse({"name": "m", "distillation": {"method": name}}, "s.yaml")
    assert cfg.methods == [name] and Method.of(types_record(name)).name == name
    if spec.Config is None:
        return
    section = {f.name: f.default for f in dataclasses.fields(spec.Config)}
    cfg = config.parse({"name": "m", "distillation": {"method": name, name: section}}, "s.yaml")
    assert getattr(cfg.distillation, name) == spec.Config()
    other = next(n for n in NAMES if n != name)
    with pytest.raises(config.ConfigError, match=f"s.yaml: distillation.{name}: parameters of method {name}"):
        config.parse({"name": "m", "distillation": {"method": other, name: section}}, "s.yaml")


def types_record(name):
    import types

    return types.SimpleNamespace(method=name, temperature=2.0, alpha=0.5, own=None)


@pytest.mark.parametrize("name", NAMES)
def test_params_label_and_keys(name):
    m = Method(name, 2.0, 0.5)
    assert m.label().startswith(name)
    assert m.params() == ({} if name == methods.DEFAULT else {"method": name, **m.own()})
    assert m.key_fields() == m.params()
    assert Method.of(types_record(name)) == m
    assert m.replace(temperature=3.0).temperature == 3.0 and m.replace(temperature=3.0).own() == m.own()


@pytest.mark.parametrize("name", NAMES)
def test_one_distiller_step_trains_the_student(name):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    keras.utils.set_random_seed(1)
    student = models.cnn((12, 12, 1), 10, [4, 4], head=8, seed=1, name="s")
    teacher = models.cnn((12, 12, 1), 10, [6, 6], head=8, seed=2, name="t")
    before = [w.numpy().copy() for w in student.trainable_weights]
    d = Distiller(student, teacher, method=Method(name, 4.0, 0.5))
    d.compile(optimizer=make_optimizer("adam", 1e-2), jit_compile=False)
    hist = d.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(hist["loss"][-1]) and hist["soft_loss"][-1] > 0
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, student.trainable_weights))
