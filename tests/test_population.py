"""A population's members train as their lone runs do: same weights to float tolerance, same pairing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness.data import pipelines
from harness.distill.distiller import Distiller, compile_plain
from harness.distill.losses import distillation_loss
from harness.distill.models import cnn, mlp
from harness.distill.population import Population, plan, population_loss

N, SHAPE, CLASSES, BATCH = 600, (8, 8, 1), 5, 64


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N,) + SHAPE).astype(np.uint8)
    labels = rng.integers(0, CLASSES, N).astype(np.int64)
    logits = rng.normal(0, 3, (N, CLASSES)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, {"labels": labels, "teacher_logits": logits})), images


def _build(family, seed):
    keras.utils.set_random_seed(seed)
    if family == "mlp":
        return mlp(SHAPE, CLASSES, [24, 24], name="s", seed=seed)
    if family == "cnn_gap":  # two convolutions in a row, then global pooling: the stacked layout's other exits
        return cnn(SHAPE, CLASSES, [4, 6], head=16, pooling="gap", convs_per_block=2, name="s", seed=seed)
    return cnn(SHAPE, CLASSES, [4], head=16, name="s", seed=seed)


def _inputs(family, ds, seed):
    """A student and its batches as `Context.inputs` makes them: both right after seeding (the
    shuffle's op seed pairs with the global seed)."""
    student = _build(family, seed)
    return student, pipelines.batches(ds, BATCH, shuffle_seed=seed, max_shift=1)


# (seed, temperature, alpha): two distilled members and the first one's scratch twin (alpha 1)
MEMBERS = [(1, 4.0, 0.3), (2, 2.0, 0.7), (1, 1.0, 1.0)]


def _lone(family, ds, seed, temperature, alpha, epochs):
    student, batches = _inputs(family, ds, seed)
    if alpha == 1.0:
        compile_plain(student, keras.optimizers.Adam(1e-2), jit_compile=False, steps_per_execution=1)
        student.fit(pipelines.labels_only(batches), epochs=epochs, verbose=0)
    else:
        d = Distiller(student, temperature=temperature, alpha=alpha)
        d.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        d.fit(batches, epochs=epochs, verbose=0)
    return student


def _together(family, ds, epochs):
    students, streams = zip(*[_inputs(family, ds, s) for s, _, _ in MEMBERS])
    pop = Population(list(students), [t for _, t, _ in MEMBERS], [a for _, _, a in MEMBERS])
    pop.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    stacked = tf.data.Dataset.zip(tuple(streams)).map(
        lambda *xy: (tf.stack([x for x, _ in xy]), {k: tf.stack([y[k] for _, y in xy]) for k in xy[0][1]}))
    hist = pop.fit(stacked, epochs=epochs, verbose=0)
    return [pop.copy_into(m, _build(family, 99)) for m in range(len(MEMBERS))], pop, hist


@pytest.mark.parametrize("family", ["mlp", "cnn", "cnn_gap"])
def test_members_equal_their_lone_runs_after_an_epoch(data, family):
    ds, images = data
    together, pop, _ = _together(family, ds, epochs=1)
    x = images[:200].astype(np.float32)
    for (seed, t, a), member in zip(MEMBERS, together):
        lone = _lone(family, ds, seed, t, a, epochs=1)
        np.testing.assert_allclose(member(x).numpy(), lone(x).numpy(), atol=1e-4)
    # the members really differ (distinct seeds, losses), so the check above can fail
    assert np.abs(together[0](x).numpy() - together[1](x).numpy()).max() > 1e-2
    assert len(pop.trainable_variables) == len(together[0].trainable_variables)


def test_a_member_and_its_twin_share_initial_weights_and_batches(data):
    ds, _ = data
    (first, s), (second, _) = _inputs("mlp", ds, 1), _inputs("mlp", ds, 1)
    students = [first, second]
    for a, b in zip(students[0].weights, students[1].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # with the same loss they stay identical: one seeded stream feeds both (two iterators of one
    # dataset would each draw their own reshuffle seed)
    pop = Population(students, [2.0, 2.0], [0.5, 0.5])
    pop.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    pop.fit(s.map(lambda x, y: (tf.stack([x, x]), {k: tf.stack([v, v]) for k, v in y.items()})), epochs=1, verbose=0)
    for w in pop.trainable_variables:
        np.testing.assert_array_equal(w[0].numpy(), w[1].numpy())


def test_population_loss_is_each_members_distillation_loss():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, CLASSES, (3, 16))
    s = rng.normal(0, 40, (3, 16, CLASSES)).astype(np.float32)  # large logits too
    t = rng.normal(0, 40, (3, 16, CLASSES)).astype(np.float32)
    temps, alphas = np.float32([1.0, 3.0, 20.0]), np.float32([0.0, 0.5, 1.0])
    got = population_loss(labels, s, t, temps, alphas)
    for m in range(3):
        want = distillation_loss(labels[m], s[m], t[m], temps[m], alphas[m])
        for g, w in zip(got, want):
            assert float(g[m]) == pytest.approx(float(w), rel=1e-5, abs=1e-6)


def test_what_cannot_be_stacked_says_why():
    keras.utils.set_random_seed(0)
    assert plan(mlp(SHAPE, CLASSES, [8]))[1] is None
    assert "Dropout" in plan(mlp(SHAPE, CLASSES, [8], dropout=0.5))[1]
    assert "BatchNormalization" in plan(cnn(SHAPE, CLASSES, [4], batch_norm=True))[1]
    assert "bfloat16" in plan(mlp(SHAPE, CLASSES, [8], dtype="mixed_bfloat16"))[1]


def test_the_confirmations_runs_trained_together_equal_their_lone_runs(small_splits, tmp_path, caplog, monkeypatch):
    """A whole recipe (2 epochs, the harness's XLA choice, 32 steps per execution) on real data:
    each member's validation accuracy equals its lone run's within one example; each epoch says so."""
    from harness import config
    from harness.confirm import population
    from harness.distill.recipe import Recipe
    from harness.search import stores
    from harness.training.context import Context
    from harness.training.run import train_distilled
    from harness.training.validation import scores
    from harness.teacher.trained import Teacher

    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}, "training": {"epochs": 2}})
    logits = np.random.default_rng(0).normal(0, 4, (len(small_splits.transfer), 10)).astype(np.float32)
    teacher = Teacher([], logits, 0.0, 0.0, "k", tmp_path, from_cache=True)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), small_splits, teacher, "0", "parent")
    assert ctx.together()
    recipe, runs = Recipe.of(cfg.training), [(3, 2.0, 0.4), (4, 5.0, 0.1)]
    monkeypatch.setattr(population._Histories, "PROGRESS_EVERY_S", 0.0)  # a line after every epoch
    with caplog.at_level("INFO", logger="harness.confirm.population"):
        population.train(ctx, 16, recipe, runs, [3])
    assert [m for m in caplog.messages if "3 runs together, epoch" in m][-1].startswith(
        "confirmation: width 16, 3 runs together, epoch 2/2")
    one = 1 / len(small_splits.validation) + 1e-9
    for seed, t, a in runs:
        _, together = train_distilled(ctx, 16, seed, t, a, recipe, [])  # taken from ctx.pretrained
        _, lone = train_distilled(ctx, 16, seed, t, a, recipe, [], every_epoch=False)
        assert abs(together["val_accuracy"][-1] - lone["val_accuracy"][-1]) <= one
        assert together["loss"] == pytest.approx(lone["loss"], rel=1e-3)
    twin, _ = ctx.pretrained.pop(ctx.run_key("scratch", 16, 3, recipe))
    assert not ctx.pretrained
    fresh, batches = ctx.inputs(16, 3, distilled=False)
    compile_plain(fresh, recipe.optimizer_for(ctx.transfer_examples), jit_compile=ctx.jit)
    fresh.fit(batches, epochs=2, verbose=0)
    x, y = ctx.val_images, small_splits.validation.labels
    want, got = scores(ctx.forward(fresh, x), y, False), scores(ctx.forward(twin, x), y, False)
    assert abs(want[1] - got[1]) <= one and want[0] == pytest.approx(got[0], rel=1e-3)


def test_under_another_method_only_the_twins_train_together(small_splits, tmp_path):
    """A twin keyed as trained together always was: under dkd the distilled runs go one by one (a
    population's loss is kd's) but their twins still train as a population."""
    from harness import config
    from harness.confirm import population
    from harness.distill.methods import Method
    from harness.record import TrialRecord
    from harness.search import stores
    from harness.training.context import Context
    from harness.teacher.trained import Teacher

    cfg = config.parse({"name": "t", "dataset": {"limit": 2000}, "training": {"epochs": 1}})
    logits = np.zeros((len(small_splits.transfer), 10), np.float32)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), small_splits,
                  Teacher([], logits, 0.0, 0.0, "k", tmp_path, from_cache=True), "0", "parent")
    r = TrialRecord(number=1, width=8, temperature=2.0, alpha=0.5)
    population.prepare(ctx, r, [3, 4], Method("dkd", 2.0, 0.5))
    assert {k[0] for k in ctx.pretrained} == {"scratch"} and {k[2] for k in ctx.pretrained} == {3, 4}
    ctx.pretrained.clear()
    population.prepare(ctx, r, [3], Method("kd", 2.0, 0.5))
    assert sorted(k[0] for k in ctx.pretrained) == ["distilled", "scratch"]


def test_a_population_s_forward_pass_is_each_member_s_own_for_any_conv_layer():
    """Convolutions without bias or activation, strided, then max pooling of the members' branches
    and a flatten: each member's logits are its own student's."""
    def build(seed):
        keras.utils.set_random_seed(seed)
        x = inputs = keras.Input(SHAPE)
        x = keras.layers.Rescaling(1 / 255)(x)
        x = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)(x)
        x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", activation="relu")(x)
        x = keras.layers.MaxPooling2D(1)(x)
        x = keras.layers.Flatten()(x)
        return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))

    students = [build(s) for s in (1, 2, 3)]
    assert plan(students[0])[1] is None
    pop = Population(students, [2.0] * 3, [0.5] * 3)
    x = np.random.default_rng(1).integers(0, 256, (3, 7) + SHAPE).astype(np.float32)
    got = pop(tf.constant(x)).numpy()
    for m, student in enumerate(students):
        np.testing.assert_allclose(got[m], student(x[m]).numpy(), rtol=1e-5, atol=1e-5)
