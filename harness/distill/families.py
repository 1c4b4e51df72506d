"""Compact student families: depthwise-separable CNNs and Keras' MobileNetV3Small.

Both take float32 images `[batch, h, w, c]` with values 0-255 and return logits `[batch, classes]`,
as every model of the harness does.

- `separable` (Howard et al. 2017, *MobileNets*): a 3x3 stem convolution, then `depth` blocks of
  `convs_per_block` depthwise-separable 3x3 convolutions (`SeparableConv2D`: a depthwise 3x3 then a
  1x1 pointwise), each with optional batch norm and ReLU, a 2x2 max-pool after each block while the
  map is at least 2x2, then a global average and the logits. Block i has
  `round(width * 2**i * width_multiplier)` channels (at least 1): `width` is the searched knob,
  `width_multiplier` MobileNet's alpha on top of it.
- `mobilenet_v3_small` (Howard et al. 2019, *Searching for MobileNetV3*):
  `keras.applications.MobileNetV3Small(alpha=width / 100, weights=None, include_top=False,
  pooling="avg")` then a `Dense` of logits. Its own `Rescaling(1/127.5, offset=-1)` takes the 0-255
  images (`include_preprocessing=True`, Keras' documented input range). It needs at least 32x32 and 3
  channels: smaller images are resized up inside the model (`Resizing`), one channel is repeated to
  three (`Concatenate`); any other channel count is refused (`ValueError`, a one-line message the
  caller turns into a ConfigError). `depth` does not apply (the architecture is fixed).
"""

from __future__ import annotations

import keras

from harness.distill.batch_norm import fused as fused_batch_norm

MOBILENET_MIN_SIZE = 32  # keras.applications.MobileNetV3Small refuses smaller inputs


def block_channels(width: int, depth: int, width_multiplier: float = 1.0) -> list[int]:
    """Channels of the separable family's blocks: width * 2**i * width_multiplier, at least 1."""
    return [max(1, int(round(width * 2**i * width_multiplier))) for i in range(depth)]


def separable(input_shape, num_classes: int, width: int, depth: int = 2, *, width_multiplier: float = 1.0,
              convs_per_block: int = 1, batch_norm: bool = False, dropout: float = 0.0,
              name: str = "separable", seed: int | None = None, dtype: str | None = None) -> keras.Model:
    """The depthwise-separable student (see the module). `dtype`: a Keras dtype policy or None."""
    p = {} if dtype in (None, "float32") else {"dtype": dtype}
    channels = block_channels(width, depth, width_multiplier)
    inputs = keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, **p)(inputs)

    def act(x, suffix):
        if batch_norm:
            x = fused_batch_norm(keras.layers.BatchNormalization(name=f"bn_{suffix}", **p))(x)
        return keras.layers.ReLU(name=f"relu_{suffix}", **p)(x)

    x = act(keras.layers.Conv2D(channels[0], 3, padding="same", use_bias=not batch_norm, name="stem", **p)(x), "stem")
    h, w = int(input_shape[0]), int(input_shape[1])
    for i, c in enumerate(channels):
        for j in range(convs_per_block):
            suffix = f"{i}" if convs_per_block == 1 else f"{i}_{j}"
            x = keras.layers.SeparableConv2D(c, 3, padding="same", use_bias=not batch_norm,
                                             name=f"sep_{suffix}", **p)(x)
            x = act(x, suffix)
        if h >= 2 and w >= 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool_{i}", **p)(x)
            h, w = h // 2, w // 2
    x = keras.layers.GlobalAveragePooling2D(name="gap", **p)(x)
    return keras.Model(inputs, _logits(x, num_classes, dropout, seed, p), name=name)


def _logits(x, num_classes: int, dropout: float, seed, p: dict):
    """The families' head: dropout, then the logits layer, cast back to float32 under a bfloat16 policy `p`."""
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, **p)(x)
    logits = keras.layers.Dense(num_classes, name="logits", **p)(x)
    if p:
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    return logits


def mobilenet_input_problem(input_shape) -> str | None:
    """Why MobileNetV3Small cannot take these images (None: it can, resized or tiled inside)."""
    if int(input_shape[-1]) not in (1, 3):
        return (f"mobilenet_v3_small takes 1 or 3 channels (1 is repeated to 3), not {int(input_shape[-1])}: "
                "choose another student.family")
    return None


def mobilenet_v3_small(input_shape, num_classes: int, width: int, *, dropout: float = 0.0,
                       name: str = "mobilenet_v3_small", seed: int | None = None,
                       dtype: str | None = None) -> keras.Model:
    """MobileNetV3Small at alpha = width / 100 (see the module). Raises ValueError for images of a
    channel count other than 1 or 3."""
    problem = mobilenet_input_problem(input_shape)
    if problem:
        raise ValueError(problem)
    p = {} if dtype in (None, "float32") else {"dtype": dtype}
    h, w, c = (int(d) for d in input_shape)
    inputs = keras.Input(shape=(h, w, c), dtype="float32", name="images")
    x = inputs
    if h < MOBILENET_MIN_SIZE or w < MOBILENET_MIN_SIZE:
        h, w = max(h, MOBILENET_MIN_SIZE), max(w, MOBILENET_MIN_SIZE)
        x = keras.layers.Resizing(h, w, name="resize_to_32", **p)(x)
    if c == 1:
        x = keras.layers.Concatenate(name="gray_to_rgb", **p)([x, x, x])
    body = keras.applications.MobileNetV3Small(input_shape=(h, w, 3), alpha=width / 100.0, weights=None,
                                               include_top=False, pooling="avg", include_preprocessing=True)
    x = body(x)
    return keras.Model(inputs, _logits(x, num_classes, dropout, seed, p), name=name)


def build(cfg, width: int, input_shape, num_classes: int, *, name: str, seed: int | None = None,
          dtype: str | None = None) -> keras.Model:
    """The student of `cfg` (a StudentConfig whose family is separable or mobilenet_v3_small) at `width`."""
    if cfg.family == "separable":
        return separable(input_shape, num_classes, width, cfg.depth, width_multiplier=cfg.width_multiplier,
                         convs_per_block=cfg.convs_per_block, batch_norm=cfg.batch_norm, dropout=cfg.dropout,
                         name=name, seed=seed, dtype=dtype)
    return mobilenet_v3_small(input_shape, num_classes, width, dropout=cfg.dropout, name=name, seed=seed,
                              dtype=dtype)
