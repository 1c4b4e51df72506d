import subprocess
import sys

import keras
import numpy as np
import pytest

from harness.data import pipelines
from harness.data.evaluate import predict_logits
from harness.distill import models
from harness.distill.distiller import Distiller, compile_plain, make_optimizer


def _student(seed=1, dropout=0.0):
    keras.utils.set_random_seed(seed)
    return models.mlp((28, 28, 1), 10, [32, 32], dropout=dropout, seed=seed, name="student")


def _teacher(seed=2):
    keras.utils.set_random_seed(seed)
    return models.mlp((28, 28, 1), 10, [64, 64], seed=seed, name="teacher")


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _distill(x, y, teacher, mode, alpha=0.5, dropout=0.0, epochs=1, jit=False):
    student = _student(dropout=dropout)
    if mode == "cached":
        targets = {"labels": y, "teacher_logits": predict_logits(teacher, x)}
        d = Distiller(student, temperature=4.0, alpha=alpha)
    else:
        targets = y
        d = Distiller(student, teacher, temperature=4.0, alpha=alpha)
    d.compile(optimizer=make_optimizer("adam", 1e-3), jit_compile=jit)
    history = d.fit(pipelines.pipeline(x, targets, 32, shuffle_seed=7), epochs=epochs, verbose=0)
    return student, history


def test_teacher_is_frozen(random_data):
    x, y = random_data
    teacher = _teacher()
    before = _weights(teacher)
    _distill(x, y, teacher, "online")
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


def _noisy_teacher(seed=3):
    """A teacher whose training mode differs from its inference mode: dropout, and batch norm
    whose moving statistics are far from any batch's own."""
    keras.utils.set_random_seed(seed)
    t = models.cnn((28, 28, 1), 10, [8], head=32, dropout=0.5, input_dropout=0.2, batch_norm=True,
                   seed=seed, name="noisy_teacher")
    for layer in t.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 4.0, np.float32))
    return t


def test_the_online_teacher_runs_in_inference_mode(random_data):
    """The soft targets of a step are the teacher's inference-mode logits: no dropout, batch
    norm on its moving statistics, and nothing of the teacher moves (Hinton et al. 2015 distil
    from the trained model's predictions, not from a noisy or drifting one)."""
    x, y = random_data
    teacher = _noisy_teacher()
    x0 = x[:64].astype(np.float32)
    assert not np.allclose(teacher(x0, training=True).numpy(), teacher(x0, training=False).numpy(), atol=1e-3)
    before = [v.numpy().copy() for v in teacher.variables]  # dropout's seed state included
    cached, _ = _distill(x, y, teacher, "cached")  # targets: predict_logits, inference mode
    online, _ = _distill(x, y, teacher, "online")
    for a, b in zip(_weights(cached), _weights(online)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(before, [v.numpy() for v in teacher.variables]):  # moving statistics included
        np.testing.assert_array_equal(a, b)


def test_reports_the_four_training_metrics(random_data):
    """Each metric is what it names, over the epoch: loss = alpha * hard + (1 - alpha) * soft."""
    x, y = random_data
    _, history = _distill(x, y, _teacher(), "cached", alpha=0.25)
    h = {k: v[-1] for k, v in history.history.items()}
    assert set(h) == {"loss", "hard_loss", "soft_loss", "accuracy"}
    assert h["loss"] == pytest.approx(0.25 * h["hard_loss"] + 0.75 * h["soft_loss"], rel=1e-5)
    assert h["hard_loss"] > 0 and h["soft_loss"] > 0 and h["hard_loss"] != h["soft_loss"]


@pytest.mark.parametrize("jit", [False, True])
def test_cached_and_online_teacher_agree(random_data, jit):
    x, y = random_data
    teacher = _teacher()
    cached, _ = _distill(x, y, teacher, "cached", dropout=0.2, epochs=2, jit=jit)
    online, _ = _distill(x, y, teacher, "online", dropout=0.2, epochs=2, jit=jit)
    for a, b in zip(_weights(cached), _weights(online)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_alpha_one_is_plain_cross_entropy_training(random_data):
    x, y = random_data
    distilled, _ = _distill(x, y, _teacher(), "cached", alpha=1.0, dropout=0.2, epochs=2)
    plain = _student(dropout=0.2)
    compile_plain(plain, "adam", 1e-3, jit_compile=False)
    plain.fit(pipelines.pipeline(x, y, 32, shuffle_seed=7), epochs=2, verbose=0, shuffle=False)
    for a, b in zip(_weights(distilled), _weights(plain)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_alpha_below_one_differs_from_plain_training(random_data):
    """The guard for the test above: the soft term does change training."""
    x, y = random_data
    distilled, _ = _distill(x, y, _teacher(), "cached", alpha=0.5)
    plain = _student()
    compile_plain(plain, "adam", 1e-3, jit_compile=False)
    plain.fit(pipelines.pipeline(x, y, 32, shuffle_seed=7), epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(_weights(distilled)[0], _weights(plain)[0], atol=1e-6)


def test_validation_scores_the_student_alone(random_data):
    x, y = random_data
    student, _ = _distill(x, y, _teacher(), "cached")
    d = Distiller(student, temperature=4.0, alpha=0.5)
    d.compile(optimizer="adam")
    result = d.evaluate(pipelines.pipeline(x, y, 64), return_dict=True, verbose=0)
    logits = predict_logits(student, x)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == y), abs=1e-6)
    assert set(result) == {"loss", "accuracy"}


def test_student_saves_and_loads_without_the_distiller(random_data, tmp_path):
    x, y = random_data
    student, _ = _distill(x, y, _teacher(), "cached")
    student.save(tmp_path / "student.keras")
    np.save(tmp_path / "x.npy", x[:16].astype(np.float32))
    np.save(tmp_path / "want.npy", predict_logits(student, x[:16]))
    code = ("import keras, numpy as np; m = keras.models.load_model(%r, safe_mode=True);"
            "d = np.abs(m.predict(np.load(%r), verbose=0) - np.load(%r)).max(); print(d); assert d < 1e-5"
            % (str(tmp_path / "student.keras"), str(tmp_path / "x.npy"), str(tmp_path / "want.npy")))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


class _Recording(keras.Model):
    """Wraps a model and keeps every batch it is called on (eager steps only)."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner, self.seen = inner, []

    def call(self, x, training=False):
        self.seen.append(np.array(x))
        return self.inner(x, training=training)


def test_the_online_teacher_sees_exactly_the_students_augmented_batch(random_data):
    x, y = random_data
    teacher, student = _Recording(_teacher()), _Recording(_student())
    d = Distiller(student, teacher, temperature=4.0, alpha=0.5)
    d.compile(optimizer=make_optimizer("adam", 1e-3), run_eagerly=True)
    ds = pipelines.pipeline(x, y, 64, shuffle_seed=3, max_shift=2)
    d.fit(ds.take(2), epochs=1, verbose=0)
    assert len(teacher.seen) == 2 and len(student.seen) == 2
    for t, s in zip(teacher.seen, student.seen):
        np.testing.assert_array_equal(t, s)
    # and the batch really was jittered: it is none of the unaugmented batches
    raw = [b.numpy() for b, _ in pipelines.pipeline(x, y, 64, shuffle_seed=3).take(2)]
    assert not any(np.array_equal(teacher.seen[0], r) for r in raw)
    # recomputing the teacher on that batch gives what the step used
    np.testing.assert_allclose(teacher.inner(teacher.seen[0]).numpy(),
                               teacher.inner(student.seen[0]).numpy(), atol=0)


def test_student_augmentation_with_a_cached_teacher_is_refused():
    from harness import config

    with pytest.raises(config.ConfigError, match="distillation.teacher: student.augment needs `teacher: online`"):
        config.parse({"name": "t", "student": {"augment": {"jitter": 2}}}, "t.yaml")
    cfg = config.parse({"name": "t", "student": {"augment": {"jitter": 2}},
                        "distillation": {"teacher": "online"}}, "t.yaml")
    assert cfg.student.augment.jitter == 2
