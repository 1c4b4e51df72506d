"""Seeded tf.data pipelines over in-memory arrays: shuffle, batch, jitter, prefetch."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def jitter(images, max_shift: int, seed):
    """Random shifts of up to `max_shift` pixels (the paper's 'jitter'), per example.

    Stateless: the shifts are a function of `seed` (shape [2]) alone, so a
    seeded pipeline jitters the same way on every run, whatever the threads do.
    Vectorised with two batched gathers over a padded batch: a per-example
    `map` costs a Python-free but serial op per image, which the 2-core
    machines here cannot afford next to training.
    """
    if max_shift <= 0:
        return images
    b = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32)
    return shift(images, offsets, max_shift)


def shift(images, offsets, k: int):
    """Each image shifted by its own offsets (int32 [b, 2], each in [0, 2k]: k is no shift), the
    pixels it uncovers zero: one padded batch and two batched gathers (no per-example op)."""
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [k, k], [k, k], [0, 0]])
    oy, ox = offsets[:, :1], offsets[:, 1:]
    rows = oy + tf.range(h)[None, :]
    cols = ox + tf.range(w)[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def pipeline(images: np.ndarray, targets, batch_size: int, *, shuffle_seed: int | None = None,
             max_shift: int = 0) -> tf.data.Dataset:
    """A batched, prefetched tf.data pipeline over in-memory arrays (see `batches`).

    `targets` is an array or a dict of arrays (labels plus cached teacher logits).
    """
    return batches(tf.data.Dataset.from_tensor_slices((images, targets)), batch_size,
                   shuffle_seed=shuffle_seed, max_shift=max_shift)


def batches(examples: tf.data.Dataset, batch_size: int, *, shuffle_seed: int | None = None,
            max_shift: int = 0) -> tf.data.Dataset:
    """Shuffle, batch and prefetch a dataset of (image, target) examples.

    Building `examples` (`from_tensor_slices`) copies the arrays, so a study does
    it once and calls this per run: a new pipeline starts its shuffle afresh, so
    the same seed gives the same batch order to a distilled student and its
    scratch twin, whatever ran before in the process.
    Images become float32 with their 0-255 values: the models scale them in
    their first layer, so a saved model takes what the dataset gives.
    Jitter (`max_shift`) draws its shifts from `shuffle_seed` (0 when unset):
    each batch gets its own stateless seed from a seeded random stream, new
    each epoch, so a study file and seed always train the same way.
    """
    ds = examples
    if shuffle_seed is not None:
        ds = ds.shuffle(ds.cardinality(), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if max_shift:
        seeds = tf.data.Dataset.random(seed=shuffle_seed or 0, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(lambda xy, s: (jitter(xy[0], max_shift, s), xy[1]),
                                                num_parallel_calls=tf.data.AUTOTUNE)
    return prefetched(ds)


def prefetched(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` prefetched two batches ahead, with tf.data's autotuner off."""
    # The autotuner off: with it on, the end of an epoch often waited for its
    # next wake-up (10 ms, 20 ms, ... doubling), so an MLP epoch of 3.4 s of
    # steps took 5.1 s (seen while building `harness bench`); off, steps run as fast.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def labels_only(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Drop the cached teacher logits: the same batches, for hard-label training."""
    return ds.map(lambda x, y: (x, y["labels"]))
