"""Learning-rate schedules against hand computations, and the cnn family's new options.

Hand computations, base learning rate 2e-3:
  cosine over 100 steps:  lr(t) = 2e-3 * 0.5 * (1 + cos(pi * t / 100))
    t=0: 2e-3;  t=25: 1e-3 * (1 + cos(pi/4)) = 1.7071068e-3;  t=50: 1e-3;  t=100: 0
  linear_warmup_cosine, 130 steps of which 10 warm up (so 120 of cosine):
    t=0: 0;  t=5: 2e-3 * 5/10 = 1e-3;  t=10: 2e-3;
    t=40 (a quarter of the cosine): 1.7071068e-3;  t=70 (half): 1e-3;  t=130: 0
"""


import keras
import numpy as np
import pytest

from harness import config
from harness.distill import models, schedules


def lr_at(schedule, step):
    return float(schedule(step)) if callable(schedule) else float(schedule)


@pytest.mark.parametrize("step,expected", [(0, 2e-3), (50, 2e-3), (100, 2e-3)])
def test_constant(step, expected):
    lr = schedules.learning_rate("constant", 2e-3, 100)
    assert isinstance(lr, float)
    assert lr_at(lr, step) == pytest.approx(expected)


@pytest.mark.parametrize("step,expected",
                         [(0, 2e-3), (25, 1.7071068e-3), (50, 1e-3), (100, 0.0), (150, 0.0)])
def test_cosine(step, expected):
    lr = schedules.learning_rate("cosine", 2e-3, 100)
    assert lr_at(lr, step) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("step,expected",
                         [(0, 0.0), (5, 1e-3), (10, 2e-3), (40, 1.7071068e-3), (70, 1e-3),
                          (130, 0.0), (200, 0.0)])
def test_linear_warmup_cosine(step, expected):
    lr = schedules.learning_rate("linear_warmup_cosine", 2e-3, 130, warmup_steps=10)
    assert lr_at(lr, step) == pytest.approx(expected, abs=1e-9)


def test_steps_counts_the_last_partial_batch():
    assert schedules.steps(54_000, 128, 12) == 422 * 12
    assert schedules.steps(256, 128, 3) == 6


def test_the_optimizer_follows_the_schedule():
    """Adam reads the schedule at its own step count (one step per batch)."""
    opt = keras.optimizers.Adam(learning_rate=schedules.learning_rate("cosine", 2e-3, 100))
    w = keras.Variable(np.zeros(3, np.float32))
    for _ in range(50):
        opt.apply_gradients([(keras.ops.ones(3), w)])
    assert float(opt.learning_rate) == pytest.approx(1e-3, abs=1e-9)


@pytest.mark.parametrize("args,message", [
    (("step", 1e-3, 100), "unknown learning-rate schedule"),
    (("cosine", 1e-3, 100, 10), "only apply to linear_warmup_cosine"),
    (("linear_warmup_cosine", 1e-3, 100, 0), "warmup_steps > 0"),
    (("linear_warmup_cosine", 1e-3, 10, 10), "train longer or warm up less"),
])
def test_bad_schedules_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        schedules.learning_rate(*args)


# --- the cnn family: defaults unchanged, new options change the model ---------------------

def cnn_before_the_options(input_shape, num_classes, widths, head, dropout, seed):
    """The cnn family as it was before batch_norm / pooling / convs_per_block existed."""
    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for i, filters in enumerate(widths):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(head, activation="relu", name="head")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))


def named(model):
    """(class, name) of each layer, auto-numbered names (rescaling_3, ...) as their class only."""
    explicit = ("images", "conv_", "bn_", "relu_", "pool_", "gap", "head", "logits")
    return [(type(l).__name__, l.name if l.name.startswith(explicit) else "")
            for l in model.layers]


# Counted from models.py before the options were added (teacher of
# studies/fashion_mnist_cnn.yaml, and its width-8 student).
BEFORE = [
    ([32, 64], 256, 0.5, 824_458,
     [("InputLayer", "images"), ("Rescaling", ""), ("Conv2D", "conv_0"), ("MaxPooling2D", "pool_0"),
      ("Conv2D", "conv_1"), ("MaxPooling2D", "pool_1"), ("Flatten", ""), ("Dense", "head"),
      ("Dropout", ""), ("Dense", "logits")]),
    ([8, 16], 32, 0.0, 26_698,
     [("InputLayer", "images"), ("Rescaling", ""), ("Conv2D", "conv_0"), ("MaxPooling2D", "pool_0"),
      ("Conv2D", "conv_1"), ("MaxPooling2D", "pool_1"), ("Flatten", ""), ("Dense", "head"),
      ("Dense", "logits")]),
]


@pytest.mark.parametrize("widths,head,dropout,params,layers", BEFORE)
def test_cnn_defaults_build_todays_model(widths, head, dropout, params, layers):
    keras.utils.set_random_seed(7)
    model = models.cnn((28, 28, 1), 10, widths, head=head, dropout=dropout, seed=7)
    keras.utils.set_random_seed(7)
    before = cnn_before_the_options((28, 28, 1), 10, widths, head, dropout, seed=7)
    assert models.param_count(model) == params
    assert named(model) == layers
    for a, b in zip(model.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_build_teacher_without_the_new_fields_is_unchanged():
    cfg = config.TeacherConfig(family="cnn", widths=[32, 64], head=256, dropout=0.5,
                               input_dropout=0.0)
    model = models.build_teacher(cfg, (28, 28, 1), 10, seed=0)
    assert models.param_count(model) == 824_458
    assert named(model) == BEFORE[0][4]


def test_batch_norm_gap_and_convs_per_block_change_the_model():
    def teacher(**options):
        cfg = config.TeacherConfig(family="cnn", widths=[32, 64], head=256, dropout=0.5,
                                   input_dropout=0.0, **options)
        return models.build_teacher(cfg, (28, 28, 1), 10, seed=0)

    bn = teacher(batch_norm=True)
    # conv biases (32 + 64) give way to BN's gamma, beta, mean, variance (4 x (32 + 64))
    assert models.param_count(bn) == 824_458 - 96 + 4 * 96
    assert [l.name for l in bn.layers if l.name.startswith(("conv_", "bn_", "relu_"))] == \
        ["conv_0", "bn_0", "relu_0", "conv_1", "bn_1", "relu_1"]
    assert not bn.get_layer("conv_0").use_bias

    gap = teacher(pooling="gap")  # the head sees 64 averages, not 7 x 7 x 64 values
    assert models.param_count(gap) == 824_458 - (7 * 7 * 64 - 64) * 256
    assert isinstance(gap.get_layer("gap"), keras.layers.GlobalAveragePooling2D)

    double = teacher(batch_norm=True, pooling="gap", convs_per_block=2)
    assert [l.name for l in double.layers if l.name.startswith("conv_")] == \
        ["conv_0_0", "conv_0_1", "conv_1_0", "conv_1_1"]
    assert double(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)


def test_bad_cnn_options_are_refused():
    with pytest.raises(ValueError, match="pooling"):
        models.cnn((28, 28, 1), 10, [4], pooling="avg")
    with pytest.raises(ValueError, match="convs_per_block"):
        models.cnn((28, 28, 1), 10, [4], convs_per_block=0)
