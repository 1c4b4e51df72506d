"""A user's student (`student.builder`), unlabeled transfer images (`transfer.unlabeled`,
`transfer.unlabeled_rest`), and RGB images of another size through students, twins, jitter, the
bias correction and the checked exports. Data: 32x32 RGB arrays made here, 3 classes."""

import dataclasses
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from harness import config, tracking
from harness.confirm import confirmation as confirm
from harness.data import omitted, pipelines, sources, unlabeled
from harness.deploy import export as export_mod, tflite
from harness.distill import builder
from harness.distill.distiller import compile_plain
from harness.distill.losses import distillation_loss
from harness.distill.models import build_student, build_teacher
from harness.distill.recipe import Recipe
from harness.record import complete_records
from harness.search import space, stores
from harness.search.workers import optimize
from harness.teacher.trained import Teacher
from harness.training import twin
from harness.training.context import Context
from harness.training.run import train_distilled

SHAPE, CLASSES = (32, 32, 3), 3
BUILDERS = '''
import keras


def small_conv(width, input_shape, num_classes):
    """A user's student: one conv of `width` filters, global average pooling, logits."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, activation="relu", name="user_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="user_head")(x))


def conv_no_bias(width, input_shape, num_classes):
    """As small_conv, its head without a bias: the bias correction must wrap it."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(width, 3, activation="relu", name="user_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, use_bias=False, name="user_head")(x))


def softmax_head(width, input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def probabilities(width, input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Dense(num_classes)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Softmax(name="probs")(x))


def wrong_classes(width, input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, keras.layers.Dense(num_classes + 1)(keras.layers.Flatten()(inputs)))


def wrong_input(width, input_shape, num_classes):
    inputs = keras.Input(shape=(7,))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(inputs))


def raises(width, input_shape, num_classes):
    raise RuntimeError("no GPU in this builder")


def not_a_model(width, input_shape, num_classes):
    return "a model"


def with_lambda(width, input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(keras.layers.Flatten()(x)))


NOT_CALLABLE = 3
'''


@pytest.fixture(autouse=True)
def fresh_module():
    """Each test writes its own `my_students.py`: import it afresh (a process imports a module once)."""
    import importlib
    import sys

    sys.modules.pop("my_students", None)
    importlib.invalidate_caches()
    path = list(sys.path)
    yield
    sys.modules.pop("my_students", None)
    sys.path[:] = path


def _images(labels, rng):
    """32x32 RGB images whose class k is bright in channel k: learnable in a few steps."""
    x = rng.normal(60, 30, size=(len(labels), *SHAPE))
    x[np.arange(len(labels)), :, :, labels] += 140
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % CLASSES
        return sources.Split(_images(y, rng), y.astype(np.int64), np.arange(n))

    return sources.Splits(split(240), split(60), split(60), CLASSES, SHAPE, "rgb")


def _study(tmp_path, module=BUILDERS, **overrides):
    """A study file (and the builders' module `my_students.py`) in `tmp_path`."""
    (tmp_path / "my_students.py").write_text(textwrap.dedent(module))
    data = {"name": "own", "seed": 0, "dataset": {"limit": 100},
            "student": {"builder": "my_students:small_conv"},
            "training": {"epochs": 2, "batch_size": 32, "jit_compile": False, "steps_per_execution": 1},
            "search": {"width": {"choices": [4, 8]}}, "objectives": ["val_accuracy"], "n_trials": 1,
            "confirm": {"seeds": 2}, "exports": ["savedmodel"]}
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(data))
    return config.load(path)


def _teacher(splits, tmp_path, good=True):
    """A teacher over the RGB data: the true class's logit 4 (`good`), or an untrained MLP's logits."""
    keras.utils.set_random_seed(0)
    model = build_teacher(config.TeacherConfig(widths=[16]), SHAPE, CLASSES)
    logits = (4.0 * np.eye(CLASSES, dtype=np.float32)[splits.transfer.labels] if good
              else model.predict(splits.transfer.images.astype(np.float32), verbose=0))
    return Teacher([model], logits, 0.0, 0.0, "teacher-key", tmp_path, from_cache=True)


def _params(width):  # small_conv: 3x3xCxwidth conv + bias, then width x classes + bias
    return 9 * SHAPE[-1] * width + width + width * CLASSES + CLASSES


def _weights(model):
    return [v.numpy() for v in model.trainable_variables]


# ---------------------------------------------------------------- the builder


def test_a_builder_student_is_searched_twinned_and_confirmed(rgb, tmp_path):
    cfg = _study(tmp_path, max_params=_params(4))
    assert space.allowed_widths(cfg, SHAPE, CLASSES) == [4]  # the budget counts the builder's parameters
    cfg = dataclasses.replace(cfg, max_params=None)
    ws = stores.Workspace.resolve(tmp_path)
    exp = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    with tracking.start("study", "own", experiment_id=exp) as parent:
        ctx = Context(cfg, ws, rgb, _teacher(rgb, tmp_path), exp, parent.info.run_id)
        optimize(ctx, 1)
        (r,) = complete_records(stores.create_study(cfg, ws).trials)
        assert r.params == _params(r.width) and r.baseline_val_accuracy is not None
        stored = twin.load(tmp_path, cfg, [r.width], data=rgb.digest)[0]
        assert stored.params == _params(r.width)
        rows = confirm.run(ctx, [r])
    assert {(x.role, x.params) for x in rows} == {("distilled", _params(r.width)), ("scratch", _params(r.width))}
    assert len(rows) == 4  # 2 seeds, each distilled and scratch
    student = keras.models.load_model(r.model_path, safe_mode=True, compile=False)
    assert "user_conv" in [layer.name for layer in student.layers]  # the user's model, as built

    # The builder's identity is in every key: an edited builder file never reuses a twin or a compiled model.
    twin_key, compile_key = twin.key(cfg, 4, 1, data="d"), ctx.compile_key("distilled", 4, Recipe.of(cfg.training))
    (tmp_path / "my_students.py").write_text(BUILDERS + "\n# edited\n")
    assert twin.key(cfg, 4, 1, data="d") != twin_key
    assert ctx.compile_key("distilled", 4, Recipe.of(cfg.training)) != compile_key
    other = dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, builder="my_students:wrong_input"))
    assert twin.key(other, 4, 1, data="d") != twin.key(cfg, 4, 1, data="d")
    assert "builder" not in config.StudentConfig().key_dict()  # built-in students keep the keys of before


@pytest.mark.parametrize("name, says", [
    ("no_such_module:f", "cannot resolve 'no_such_module:f'"),
    ("my_students:missing", "cannot resolve 'my_students:missing'"),
    ("my_students:NOT_CALLABLE", "is a int, not a function"),
    ("my_students:raises", "raised RuntimeError: no GPU in this builder"),
    ("my_students:not_a_model", "returned a str, not a keras.Model"),
    ("my_students:wrong_classes", "outputs shape (2, 4) for 2 images; it must output logits [batch, 3]"),
    ("my_students:wrong_input", "cannot take float32 images [batch, 32, 32, 3]"),
    ("my_students:softmax_head", "ends in a softmax"),
    ("my_students:probabilities", "ends in a softmax"),
    ("my_students:with_lambda", "does not save and load back"),
    ("my_students", "expected \"package.module:function\""),
])
def test_a_bad_builder_is_one_line_naming_the_field_and_the_file(tmp_path, name, says):
    with pytest.raises(config.ConfigError) as e:
        cfg = _study(tmp_path, **{"student.builder": name})
        builder.check(cfg.student.builder, cfg.source, [4, 8], SHAPE, CLASSES)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'own.yaml'}: student.builder: ") and says in msg and "\n" not in msg


def test_a_module_that_fails_to_import_is_one_line(tmp_path):
    cfg = _study(tmp_path, module="import keras\nraise ImportError('needs torch')\n")
    with pytest.raises(config.ConfigError, match=r"student.builder: cannot resolve .*needs torch"):
        builder.check(cfg.student.builder, cfg.source, [4], SHAPE, CLASSES)


def test_the_command_line_refuses_a_bad_builder_with_exit_2_and_writes_nothing(tmp_path, capsys):
    from helpers import run_cli

    cfg = _study(tmp_path, **{"student.builder": "my_students:wrong_classes"})
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, out, err = run_cli(["study", cfg.source, "--workdir", workdir], capsys)
    assert code == 2 and "student.builder" in err and str(cfg.source) in err and "Traceback" not in out + err
    assert not list(workdir.iterdir())


# ---------------------------------------------------------------- unlabeled images


def test_the_hard_term_averages_over_labeled_examples_only():
    s = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    t = tf.constant([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    labels = tf.constant([0, -1, 2, -1])
    total, hard, soft = distillation_loss(labels, s, t, 2.0, 0.3, masked=True)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[0, 2], logits=tf.gather(s, [0, 2]))
    np.testing.assert_allclose(hard, tf.reduce_mean(ce), rtol=1e-6)  # the two labeled examples only
    _, _, soft_all = distillation_loss(tf.constant([0, 1, 2, 0]), s, t, 2.0, 0.3)
    np.testing.assert_allclose(soft, soft_all, rtol=1e-6)  # the soft term: every example
    np.testing.assert_allclose(total, 0.3 * hard + 0.7 * soft, rtol=1e-6)
    _, none, _ = distillation_loss(tf.constant([-1, -1, -1, -1]), s, t, 2.0, 0.3, masked=True)
    assert float(none) == 0.0
    labeled = tf.constant([0, 1, 2, 0])  # nothing masked: the plain mean, as before
    for a, b in zip(distillation_loss(labeled, s, t, 2.0, 0.3, masked=True), distillation_loss(labeled, s, t, 2.0, 0.3)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # an unlabeled example's gradient comes from the soft term alone
    with tf.GradientTape() as tape:
        tape.watch(s)
        _, hard, _ = distillation_loss(labels, s, t, 2.0, 1.0, masked=True)
    g = tape.gradient(hard, s).numpy()
    assert np.all(g[[1, 3]] == 0) and np.any(g[[0, 2]] != 0)


def _train_twin(ctx, width, seed):
    recipe = Recipe.of(ctx.cfg.training)
    fresh, batches = ctx.inputs(width, seed, distilled=False)
    compile_plain(fresh, recipe.optimizer_for(ctx.transfer_examples), jit_compile=False, steps_per_execution=1)
    fresh.fit(batches, epochs=recipe.epochs, verbose=0)
    return _weights(fresh)


def test_unlabeled_images_change_the_distilled_student_and_leave_the_twin_alone(rgb, tmp_path, caplog):
    extra = _images(np.arange(90) % CLASSES, np.random.default_rng(5))
    np.savez(tmp_path / "more.npz", x=extra)
    ws = stores.Workspace.resolve(tmp_path)
    teacher = _teacher(rgb, tmp_path, good=False)
    plain_cfg = _study(tmp_path, **{"student.builder": None, "transfer.fraction": 0.5})
    with_cfg = _study(tmp_path, **{"student.builder": None, "transfer.fraction": 0.5, "transfer.unlabeled": "more.npz"})
    plain, more = Context(plain_cfg, ws, rgb, teacher, "0", "p"), Context(with_cfg, ws, rgb, teacher, "0", "p")
    assert more.unlabeled_examples == 90 and more.distill_examples == plain.transfer_examples + 90
    assert more.transfer_examples == plain.transfer_examples == 120
    recipe = Recipe.of(plain_cfg.training)
    a, _ = train_distilled(plain, 8, 3, 2.0, 0.5, recipe, [])
    b, hist = train_distilled(more, 8, 3, 2.0, 0.5, recipe, [])
    assert any(not np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert 0.0 <= hist["accuracy"][-1] <= 1.0  # the training accuracy counts labeled examples only
    # the twin: the same key, the same batches, bit-identical weights
    assert twin.key(with_cfg, 8, 3, data="d") == twin.key(plain_cfg, 8, 3, data="d")
    for x, y in zip(_train_twin(plain, 8, 3), _train_twin(more, 8, 3)):
        np.testing.assert_array_equal(x, y)
    # the distilled student's batches: every labeled example with its label, every unlabeled one once, label -1
    seen = np.concatenate([y["labels"].numpy() for _, y in more.inputs(8, 3)[1]])
    assert np.sum(seen == -1) == 90 and np.sum(seen >= 0) == 120
    # its teacher logits were computed once and cached; a second context reads them back
    entries = list(ws.teacher_cache.glob("unlabeled-*/logits.npy"))
    assert len(entries) == 1
    np.testing.assert_allclose(np.load(entries[0]), teacher.members[0].predict(extra.astype(np.float32), verbose=0),
                               rtol=1e-5, atol=1e-5)
    with caplog.at_level("INFO"):
        Context(with_cfg, ws, rgb, teacher, "0", "p")
    assert "from cache" in caplog.text
    assert more.unlabeled_key and not plain.unlabeled_key  # the distilled confirmation key tells them apart


def test_the_rest_of_the_transfer_split_joins_without_labels(rgb, tmp_path):
    cfg = _study(tmp_path, **{"student.builder": None, "transfer.fraction": 0.25, "transfer.unlabeled_rest": True,
                              "transfer.omit_classes": [2]})
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), rgb, _teacher(rgb, tmp_path), "0", "p")
    labels = rgb.transfer.labels
    assert ctx.transfer_examples == 40  # a quarter of classes 0 and 1
    assert ctx.distill_examples == 160 == np.sum(labels != 2)  # the rest of them, unlabeled; class 2 never
    seen = np.concatenate([y["labels"].numpy() for _, y in ctx.inputs(8, 0)[1]])
    assert np.sum(seen == -1) == 120 and 2 not in seen
    with pytest.raises(config.ConfigError, match="transfer.unlabeled_rest: needs fraction < 1"):
        _study(tmp_path, **{"transfer.unlabeled_rest": True})


def test_an_unlabeled_folder_of_pngs_reads_as_the_arrays(rgb, tmp_path):
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    images = rgb.test.images[:5]
    for i, img in enumerate(images):
        (folder / f"{i}.png").write_bytes(tf.io.encode_png(img).numpy())
    cfg = _study(tmp_path, **{"transfer.unlabeled": "unlabeled"})
    np.testing.assert_array_equal(unlabeled.read(cfg.transfer, cfg.source, SHAPE), images)


@pytest.mark.parametrize("make, says", [
    (lambda d: "nowhere.npz", "no such file or folder"),
    (lambda d: (np.savez(d / "y.npz", y=np.zeros(3)), "y.npz")[1], "has no array `x` or `x_train`"),
    (lambda d: (np.savez(d / "s.npz", x=np.zeros((3, 28, 28), np.uint8)), "s.npz")[1],
     "the images are 28x28x1, the dataset's are 32x32x3"),
    (lambda d: (np.savez(d / "f.npz", x=np.full((3, 32, 32, 3), 0.5)), "f.npz")[1], "whole values 0-255"),
    (lambda d: ((d / "c" / "cats").mkdir(parents=True), "c")[1], "holds no image files"),  # read recursively
    (lambda d: ((d / "b").mkdir(), (d / "b" / "x.png").write_bytes(b"\x89PNG broken"), "b")[2], "x.png: not a readable"),
    (lambda d: ((d / "t.txt").write_text("hi"), "t.txt")[1], "neither an .npz file nor a folder"),
])
def test_bad_unlabeled_images_are_one_line(tmp_path, make, says):
    cfg = _study(tmp_path, **{"transfer.unlabeled": make(tmp_path)})
    with pytest.raises(config.ConfigError) as e:
        unlabeled.check(cfg, SHAPE)
    assert str(e.value).startswith(f"{cfg.source}: transfer.unlabeled: ") and says in str(e.value)


# ---------------------------------------------------------------- RGB 32x32 through every part


def test_built_in_students_train_on_rgb_with_jitter_and_their_bias_corrects(rgb):
    for student in (config.StudentConfig(), config.StudentConfig(family="cnn", depth=2, head=16)):
        model = build_student(student, 8, SHAPE, CLASSES, seed=0)
        assert model.input_shape == (None, *SHAPE) and model.output_shape == (None, CLASSES)
        compile_plain(model, "adam", 1e-2, jit_compile=False, steps_per_execution=1)
        ds = pipelines.pipeline(rgb.transfer.images, rgb.transfer.labels, 32, shuffle_seed=0, max_shift=2)
        model.fit(ds, epochs=1, verbose=0)
        fix = omitted.correct(model, rgb, [1])
        fixed = omitted.corrected_model(model, [1], fix.shift)
        x = rgb.test.images[:8].astype(np.float32)
        np.testing.assert_allclose(fixed.predict(x, verbose=0), omitted.shifted(model.predict(x, verbose=0), [1],
                                   fix.shift), rtol=1e-5, atol=1e-5)
    x, _ = next(iter(pipelines.pipeline(rgb.transfer.images[:4], rgb.transfer.labels[:4], 4, shuffle_seed=1,
                                        max_shift=2)))
    assert x.shape == (4, *SHAPE)
    shifted = pipelines.jitter(tf.constant(rgb.transfer.images[:4].astype(np.float32)), 2, tf.constant([1, 2]))
    assert shifted.shape == (4, *SHAPE) and not np.array_equal(shifted.numpy(), rgb.transfer.images[:4])


def test_a_users_rgb_student_exports_and_passes_every_check(rgb, tmp_path):
    cfg = _study(tmp_path, **{"student.builder": "my_students:conv_no_bias"})
    keras.utils.set_random_seed(0)
    student = build_student(cfg.student, 8, SHAPE, CLASSES, source=cfg.source)
    compile_plain(student, "adam", 3e-2, jit_compile=False, steps_per_execution=1)
    student.fit(rgb.transfer.images.astype(np.float32), rgb.transfer.labels, epochs=30, batch_size=60, verbose=0)
    # its logits have no bias to correct: the bias correction wraps it, and the wrap exports too
    x = rgb.validation.images.astype(np.float32)
    want = omitted.shifted(student.predict(x, verbose=0), [2], 0.25)
    student = omitted.corrected_model(student, [2], 0.25)
    assert "bias_correction" in [layer.name for layer in student.layers]
    np.testing.assert_allclose(student.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    data = export_mod.CheckData(rgb.validation.images, rgb.test.images, rgb.test.labels, rgb.transfer.images[:50],
                                latency_runs=20)
    outs = {k: tmp_path / "out" / name for k, name in
            (("savedmodel", "sm"), ("tflite", "f.tflite"), ("tflite-int8", "q.tflite"))}
    figures = export_mod.export(student, outs, data)
    for kind, f in figures.items():
        assert "refused" not in f, f
        assert f["test_accuracy"] > 0.9 and f["p50_ms"] > 0, (kind, f)
    assert all(p.exists() for p in outs.values())
    interp = tflite.interpreter(str(outs["tflite-int8"]))
    inp = interp.get_input_details()[0]
    assert list(inp["shape_signature"]) == [-1, *SHAPE] and inp["dtype"] == np.uint8
