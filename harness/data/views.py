"""Consistent views of the transfer set (`distillation.teacher: views`).

Beyer et al. 2022 (*Knowledge distillation: A good teacher is patient and consistent*) find
that the student must match the teacher on the very image it sees, augmented ("function
matching"); FKD (Shen & Xing 2022, *A Fast Knowledge Distillation Framework*) makes that cheap
by storing the teacher's soft labels for several views of each image once. Here a view is a
pure function of (the study's seed, the example's index in the transfer split, the view number
v): its parameters come from a counter-based hash of those three numbers and the parameter's
number, so the view of index i is the same whatever batch it lands in, in the cache's single
teacher pass and in every run's pipeline alike. Everything is vectorised over a batch, in-graph
(no per-example Python or `map`).

A view, in this order (`ViewsConfig`): a random `crop` [h, w] resized back to the image size
(bilinear, `tf.image.crop_and_resize`; corners on pixel centres), a horizontal `flip` (half the
views), a `shift` of up to that many pixels each way (`pipelines.shift`, uncovered pixels 0);
with `mixup` = a > 0, a mix `lam * view(i, v) + (1 - lam) * view(j, v)`, the partner j drawn
from the whole transfer split and lam from Beta(a, a), both by the same hash (Zhang et al. 2018).
The teacher's logits are those of the mixed image itself, not a mix of logits.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from harness.config import ConfigError
from harness.data import pipelines

log = logging.getLogger(__name__)

# The hash's last input: which parameter of a view is drawn.
SHIFT_Y, SHIFT_X, FLIP, CROP_Y, CROP_X, PARTNER, LAMBDA = range(7)


def _u32(x):
    return tf.cast(x, tf.uint32)


def _mix(x):
    """A 32-bit integer hash with full avalanche (Wellons' `lowbias32`); uint32 in, uint32 out."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(0x7FEB352D)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(15)))
    x = x * _u32(0x846CA68B)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


def uniform(seed: int, index, v, k: int):
    """float32 [b] in [0, 1): parameter `k` of view `v` (int [b]) of example `index` (int [b]); a
    function of these numbers alone (24 random bits)."""
    h = _mix(_u32(tf.bitwise.bitwise_xor(_u32(seed & 0xFFFFFFFF), _u32(0x9E3779B9))))
    h = _mix(tf.bitwise.bitwise_xor(h, _u32(index)))
    h = _mix(tf.bitwise.bitwise_xor(h, _u32(v)))
    h = _mix(tf.bitwise.bitwise_xor(h, _u32(k)))
    return tf.cast(tf.bitwise.right_shift(h, _u32(8)), tf.float32) * (1.0 / (1 << 24))


def _below(u, n):
    """int32 [b] in [0, n): `u` (uniform [0, 1)) scaled."""
    return tf.minimum(tf.cast(tf.floor(u * float(n)), tf.int32), n - 1)


def beta_quantile(u, a: float, steps: int = 30):
    """float32 [b]: the Beta(a, a) quantile of `u`, by bisection on the regularized incomplete
    beta function (`tf.math.betainc`; to 2**-steps), so a lambda is a function of its uniform."""
    lo, hi = tf.zeros_like(u), tf.ones_like(u)
    aa = tf.fill(tf.shape(u), tf.constant(a, tf.float32))
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = tf.math.betainc(aa, aa, mid) < u
        lo, hi = tf.where(below, mid, lo), tf.where(below, hi, mid)
    return (lo + hi) / 2


def _geometric(images, index, v, spec, seed: int):
    """Crop-resize, flip and shift of `images` (the examples `index`), float32 [b, h, w, c]."""
    x = tf.cast(images, tf.float32)
    h, w = int(images.shape[1]), int(images.shape[2])
    if spec.crop is not None:
        ch, cw = spec.crop
        y0 = tf.cast(_below(uniform(seed, index, v, CROP_Y), h - ch + 1), tf.float32)
        x0 = tf.cast(_below(uniform(seed, index, v, CROP_X), w - cw + 1), tf.float32)
        boxes = tf.stack([y0 / max(h - 1, 1), x0 / max(w - 1, 1), (y0 + ch - 1) / max(h - 1, 1),
                          (x0 + cw - 1) / max(w - 1, 1)], axis=1)
        x = tf.image.crop_and_resize(x, boxes, tf.range(tf.shape(x)[0]), [h, w])
    if spec.flip:
        flipped = uniform(seed, index, v, FLIP) < 0.5
        x = tf.where(flipped[:, None, None, None], tf.reverse(x, axis=[2]), x)
    if spec.shift > 0:
        n = 2 * spec.shift + 1
        offsets = tf.stack([_below(uniform(seed, index, v, SHIFT_Y), n), _below(uniform(seed, index, v, SHIFT_X), n)],
                           axis=1)
        x = pipelines.shift(x, offsets, spec.shift)
    return x


def view(pool, index, v, spec, seed: int):
    """float32 [b, h, w, c], values 0-255: view `v[j]` of example `index[j]` of `pool` (the transfer
    split's images, uint8 [N, h, w, c]), for `spec` (a `ViewsConfig`) and the study's `seed`."""
    index = tf.cast(index, tf.int64)
    x = _geometric(tf.gather(pool, index), index, v, spec, seed)
    if spec.mixup > 0:
        n = tf.shape(pool, out_type=tf.int64)[0]
        partner = tf.minimum(tf.cast(tf.floor(uniform(seed, index, v, PARTNER) * tf.cast(n, tf.float32)), tf.int64),
                             n - 1)
        other = _geometric(tf.gather(pool, partner), partner, v, spec, seed)
        lam = beta_quantile(uniform(seed, index, v, LAMBDA), spec.mixup)[:, None, None, None]
        x = lam * x + (1.0 - lam) * other
    return x


def batches(pool: tf.Tensor, positions: np.ndarray, labels: np.ndarray, logits: tf.Tensor, spec, seed: int,
            batch_size: int, shuffle_seed: int) -> tf.data.Dataset:
    """A run's training batches: (float32 views [b, h, w, c], {labels, teacher_logits}).

    `positions` (int64 [n]) are the run's examples' indices in the transfer split `pool` (uint8
    [N, h, w, c]), `labels` theirs; `logits` (float32 [V, N, classes], or [V, N, members, classes])
    the teacher's over every view. The examples are shuffled by `shuffle_seed` as `pipelines.batches`
    does; per example and epoch one view v in [0, V) is drawn from a stateless stream of that seed
    (new each epoch), the view built and its cached logits taken: a distilled run and its scratch
    twin at one seed see the same views in the same order.
    """
    count = int(logits.shape[0])
    ds = tf.data.Dataset.from_tensor_slices((positions.astype(np.int64), labels))
    ds = ds.shuffle(ds.cardinality(), seed=shuffle_seed, reshuffle_each_iteration=True).batch(batch_size)
    choices = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)

    def make(example, s):
        index, y = example
        v = tf.random.stateless_uniform(tf.shape(index), seed=s, minval=0, maxval=count, dtype=tf.int32)
        t = tf.gather_nd(logits, tf.stack([tf.cast(v, tf.int64), index], axis=1))
        return view(pool, index, v, spec, seed), {"labels": y, "teacher_logits": t}

    return pipelines.prefetched(tf.data.Dataset.zip(ds, choices).map(make, num_parallel_calls=tf.data.AUTOTUNE))


def check(cfg, image_shape) -> None:
    """Before anything is written: the views' crop fits the images (ConfigError otherwise); flips,
    allowed on any data, are logged. Nothing without `teacher: views` (the file's or an arm's)."""
    modes = [cfg.distillation.teacher] + [a.teacher for a in cfg.confirm.arms or []]
    if "views" not in modes:
        return
    spec = cfg.distillation.view_spec
    h, w = int(image_shape[0]), int(image_shape[1])
    if spec.crop is not None and (spec.crop[0] > h or spec.crop[1] > w):
        raise ConfigError(cfg.source, "distillation.views.crop", f"a crop of {spec.crop[0]}x{spec.crop[1]} is "
                                                                 f"larger than the images ({h}x{w}); it must fit")
    if spec.flip:
        log.info("views: horizontal flips were asked for (distillation.views.flip); on data whose classes "
                 "depend on the side (digits, text) the student learns the mirrored images too")
