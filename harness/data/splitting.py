"""What every image source shares: the in-memory `Split`, the seeded split of train into transfer,
validation (and test, where the data have none), the memory limit, and images made uint8
`[n, h, w, c]` at the size and colour the study asks for.

The validation slice is a seeded permutation of the train examples (as it always was for TFDS
names, so the default study's splits are unchanged); a test slice taken from train, where the data
have no test split, is stratified by class and drawn from a stream of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from harness.config import ConfigError, DatasetConfig

# Mixed into the study's seed for the test slice of a dataset without a test split.
TEST_STREAM = 21


@dataclass
class Split:
    images: np.ndarray  # uint8 [n, h, w, c], as the dataset gives them
    labels: np.ndarray  # int64 [n]
    index: np.ndarray  # each example's position in its source split (TFDS split, file list, array)

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def digest(self) -> str:
        """SHA-256 (hex) of the images', labels' and indices' bytes: what the split holds. Its first
        16 characters are the MLflow dataset digest (`tracking.datasets`)."""
        h = hashlib.sha256()
        for a in (self.images, self.labels, self.index):
            h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()


def take(images: np.ndarray, labels: np.ndarray, positions: np.ndarray) -> Split:
    return Split(images[positions], labels[positions], positions)


def stratified_test(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions (sorted) of a seeded, class-stratified `fraction` of the examples.

    Of each class, `round(fraction * n)` examples, at least one when the class has two or more (a
    class of one stays in train). Drawn class by class in class order, so the draw depends on the
    labels and the seed alone.
    """
    rng = np.random.default_rng([seed, TEST_STREAM])
    picked = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        n = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        picked.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def partition(n_train: int, cfg: DatasetConfig, seed: int, labels: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(transfer, validation, test) positions in train; test is None unless `labels` are given,
    in which case it is a stratified `cfg.test_fraction` of train (`stratified_test`).

    Validation is `cfg.validation_fraction` of what remains, by a permutation seeded with `seed`
    alone; with `cfg.limit`, each keeps its first `limit` positions (sorted).
    """
    pool = np.arange(n_train)
    test = None
    if labels is not None:
        test = stratified_test(labels, cfg.test_fraction, seed)
        pool = np.setdiff1d(pool, test)
    order = pool[np.random.default_rng(seed).permutation(len(pool))]
    n_val = round(cfg.validation_fraction * len(pool))
    val, transfer = np.sort(order[:n_val]), np.sort(order[n_val:])
    if cfg.limit is not None:
        val, transfer = val[:cfg.limit], transfer[:cfg.limit]
        test = None if test is None else test[:cfg.limit]
    return transfer, val, test


def assemble(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
             cfg: DatasetConfig, seed: int) -> tuple[Split, Split, Split, str]:
    """Transfer, validation and test splits of in-memory train (and test) arrays, and where the test
    split came from ("test", or "train (stratified 10%)" when `test` is None)."""
    x, y = train
    transfer, val, test_pos = partition(len(y), cfg, seed, labels=y if test is None else None)
    if test is None:
        return (take(x, y, transfer), take(x, y, val), take(x, y, test_pos),
                f"train (stratified {cfg.test_fraction:.0%})")
    tx, ty = test
    n = len(ty) if cfg.limit is None else min(cfg.limit, len(ty))
    return take(x, y, transfer), take(x, y, val), take(tx, ty, np.arange(n)), "test"


def check_memory(n_images: int, shape: tuple[int, ...], cfg: DatasetConfig, source: str,
                 itemsize: int = 1) -> None:
    """Refuse data whose arrays need more than `dataset.max_memory_mb` (ConfigError), before reading."""
    need = n_images * int(np.prod(shape)) * itemsize / 2**20
    if need > cfg.max_memory_mb:
        raise ConfigError(source, "dataset.max_memory_mb", f"the images need {need:,.0f} MB in memory "
                          f"({n_images:,} of {'x'.join(map(str, shape))}), over the limit of {cfg.max_memory_mb:,} MB; "
                          "raise dataset.max_memory_mb, or give a smaller dataset.image_size or a dataset.limit")


def adapt(images, image_size: list[int] | None, color_mode: str | None):
    """Images (a uint8 tf tensor `[..., h, w, c]`) at `image_size` and in `color_mode`, still uint8.

    Resizing is bilinear without antialiasing, as `keras.utils.image_dataset_from_directory` does
    it; rgb -> grayscale uses `tf.image.rgb_to_grayscale` (ITU-R 601 weights); values are rounded.
    """
    import tensorflow as tf

    x = images
    if color_mode == "grayscale" and x.shape[-1] == 3:
        x = tf.image.rgb_to_grayscale(x)
    elif color_mode == "rgb" and x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    if image_size is not None:
        x = tf.image.resize(x, image_size, method="bilinear")
        x = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
    return x


def adapt_array(images: np.ndarray, image_size: list[int] | None, color_mode: str | None,
                batch: int = 1024) -> np.ndarray:
    """`adapt` over a uint8 numpy array `[n, h, w, c]`, a batch at a time (numpy out)."""
    if image_size is None and color_mode is None:
        return images
    parts = [adapt(images[i:i + batch], image_size, color_mode) for i in range(0, len(images), batch)]
    return np.concatenate([np.asarray(p) for p in parts]) if parts else images
