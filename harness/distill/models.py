"""Teacher and student networks. They return logits and scale 0-255 inputs themselves."""

from __future__ import annotations

import keras

from harness.config import ConfigError, StudentConfig, TeacherConfig
from harness.distill import builder as user_builder, families
from harness.distill.batch_norm import fused as fused_batch_norm


def _policy(dtype: str | None) -> dict:
    """Layer keyword arguments for a dtype policy; none for float32, so such layers take Keras' default."""
    return {} if dtype in (None, "float32") else {"dtype": dtype}


def _float32_logits(x, dtype: str | None):
    """Logits leave a model in float32 whatever it computes in (losses, metrics, exports expect it)."""
    return x if not _policy(dtype) else keras.layers.Activation("linear", dtype="float32", name="logits_float32")(x)


def mlp(input_shape, num_classes: int, widths, *, dropout: float = 0.0,
        input_dropout: float = 0.0, name: str = "mlp", seed: int | None = None,
        dtype: str | None = None) -> keras.Model:
    """ReLU MLP as in the paper: hidden `widths`, dropout on inputs and hidden units.

    `dtype`: a Keras dtype policy for every layer (e.g. "mixed_bfloat16"); None is float32.
    """
    p = _policy(dtype)
    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, **p)(inputs)
    x = keras.layers.Flatten(**p)(x)
    if input_dropout:
        x = keras.layers.Dropout(input_dropout, seed=seed, **p)(x)
    for i, width in enumerate(widths):
        x = keras.layers.Dense(width, activation="relu", name=f"hidden_{i}", **p)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=None if seed is None else seed + i + 1, **p)(x)
    logits = _float32_logits(keras.layers.Dense(num_classes, name="logits", **p)(x), dtype)
    return keras.Model(inputs, logits, name=name)


def cnn(input_shape, num_classes: int, widths, *, head: int = 128, dropout: float = 0.0,
        input_dropout: float = 0.0, batch_norm: bool = False, pooling: str = "flatten",
        convs_per_block: int = 1, name: str = "cnn", seed: int | None = None,
        dtype: str | None = None) -> keras.Model:
    """Conv blocks of `widths` filters, then a dense head.

    A block is `convs_per_block` 3x3 convolutions, each followed by ReLU (or,
    with `batch_norm`, conv -> batch norm -> ReLU, the conv then without bias),
    then a 2x2 max-pool. `pooling` turns the last feature map into a vector:
    "flatten" (every position its own weights) or "gap" (global average, far
    fewer head weights). The defaults build the original layers, names and
    weights exactly, so existing studies and caches do not change. `dtype`: as `mlp`'s.
    """
    if pooling not in ("flatten", "gap"):
        raise ValueError(f"cnn pooling must be 'flatten' or 'gap', not {pooling!r}")
    if convs_per_block < 1:
        raise ValueError(f"cnn convs_per_block must be >= 1, not {convs_per_block}")
    p = _policy(dtype)
    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, **p)(inputs)
    if input_dropout:
        x = keras.layers.Dropout(input_dropout, seed=seed, **p)(x)
    for i, filters in enumerate(widths):
        for j in range(convs_per_block):
            suffix = f"{i}" if convs_per_block == 1 else f"{i}_{j}"
            if batch_norm:
                x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                        name=f"conv_{suffix}", **p)(x)
                x = fused_batch_norm(keras.layers.BatchNormalization(name=f"bn_{suffix}", **p))(x)
                x = keras.layers.ReLU(name=f"relu_{suffix}", **p)(x)
            else:
                x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                        name=f"conv_{suffix}", **p)(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}", **p)(x)
    if pooling == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap", **p)(x)
    else:
        x = keras.layers.Flatten(**p)(x)
    x = keras.layers.Dense(head, activation="relu", name="head", **p)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, **p)(x)
    logits = _float32_logits(keras.layers.Dense(num_classes, name="logits", **p)(x), dtype)
    return keras.Model(inputs, logits, name=name)


def _cnn_options(cfg) -> dict:
    """The cnn-only options of a teacher or student section (defaults: the original cnn)."""
    return {"head": cfg.head, "batch_norm": cfg.batch_norm, "pooling": cfg.pooling,
            "convs_per_block": cfg.convs_per_block}


def build_teacher(cfg: TeacherConfig, input_shape, num_classes: int, seed: int | None = None,
                  name: str = "teacher", dtype: str | None = None) -> keras.Model:
    builder = mlp if cfg.family == "mlp" else cnn
    extra = {} if cfg.family == "mlp" else _cnn_options(cfg)
    return builder(input_shape, num_classes, cfg.widths, dropout=cfg.dropout,
                   input_dropout=cfg.input_dropout, name=name, seed=seed, dtype=dtype, **extra)


def student_widths(cfg: StudentConfig, width: int) -> list[int]:
    """The one search knob `width` spread over the layers of the family."""
    if cfg.family == "mlp":
        return [width] * cfg.depth
    return [width * 2**i for i in range(cfg.depth)]


def build_student(cfg: StudentConfig, width: int, input_shape, num_classes: int,
                  seed: int | None = None, dtype: str | None = None, source: str = "") -> keras.Model:
    """The student at `width`: the built-in family's, or `cfg.builder`'s (the user's function,
    resolved next to the study file `source`; its weights drawn from Keras' global seed)."""
    if cfg.builder is not None:
        return user_builder.build(cfg.builder, source, width, input_shape, num_classes, dtype=dtype,
                                  depth=cfg.depth)
    if cfg.family in ("separable", "mobilenet_v3_small"):
        return families.build(cfg, width, input_shape, num_classes, name=f"student_w{width}", seed=seed, dtype=dtype)
    builder_fn = mlp if cfg.family == "mlp" else cnn
    extra = {} if cfg.family == "mlp" else _cnn_options(cfg)
    return builder_fn(input_shape, num_classes, student_widths(cfg, width), dropout=cfg.dropout,
                   input_dropout=cfg.input_dropout, name=f"student_w{width}", seed=seed, dtype=dtype, **extra)


def smallest_side(pools: int) -> int:
    """The smallest height or width a cnn with `pools` 2x2 max-pools (stride 2, valid padding) takes:
    each pool floors the size to half, and the last must leave at least one pixel."""
    return 2 ** pools


def check_fits(cfg, image_shape) -> None:
    """Before anything is written: the built-in cnn teacher and student fit images `image_shape`
    [h, w, c]; ConfigError naming the field (`teacher.widths`, one pool per width; `student.depth`,
    one pool per block), the image size and the smallest size that works. `cfg`: a StudyConfig."""
    h, w = int(image_shape[0]), int(image_shape[1])
    checks = []
    if cfg.teacher.model is None and cfg.teacher.family == "cnn":
        checks.append(("teacher.widths", len(cfg.teacher.widths), "the teacher's"))
    if cfg.student.builder is None and cfg.student.family == "cnn":
        checks.append(("student.depth", cfg.student.depth, "the student's"))
    for field, pools, whose in checks:
        side = smallest_side(pools)
        if min(h, w) < side:
            raise ConfigError(cfg.source, field, f"the images are {h}x{w}, too small for {whose} cnn with {pools} "
                                                 f"2x2 max-pools ({field} {pools}): the smallest size that works is "
                                                 f"{side}x{side}; give dataset.image_size: [{max(h, side)}, "
                                                 f"{max(w, side)}] or fewer pools")


def param_count(model: keras.Model) -> int:
    return int(model.count_params())


def flops_per_example(model: keras.Model) -> int:
    """Forward-pass FLOPs of one example (a multiply-add counts 2), from layer shapes.

    Dense, convolution (Conv2D, DepthwiseConv2D: 2 x kh x kw x channels x multiplier per output
    position; SeparableConv2D: that plus its pointwise 1x1 product) and batch normalization
    (a scale and a shift per output element: 2) layers; activations, pooling and dropout are a
    rounding error beside them. Training costs about 3x this (forward, gradient of inputs,
    gradient of weights). A subclassed model's layers, which have no symbolic output, count
    their dense layers only.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a model nested in a user's student
            total += flops_per_example(layer)
            continue
        if isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.units
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                                  keras.layers.BatchNormalization)):
            continue
        try:
            out = layer.output.shape
        except (AttributeError, ValueError):  # a subclassed model's layer has no symbolic output
            continue
        positions = 1
        for d in out[1:-1]:
            positions *= d
        if isinstance(layer, keras.layers.BatchNormalization):
            total += 2 * positions * out[-1]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            total += 2 * positions * (kh * kw * cin * mult + cin * mult * layer.pointwise_kernel.shape[-1])
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.kernel.shape
            total += 2 * positions * kh * kw * cin * mult
        else:
            kh, kw, cin, cout = layer.kernel.shape
            total += 2 * positions * kh * kw * cin * cout
    return int(total)
