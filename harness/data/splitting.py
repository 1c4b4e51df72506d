"""What every image source shares: the in-memory `Split`, the seeded split of train into transfer,
validation (and test, where the data have none), the memory limit, and images made uint8
`[n, h, w, c]` at the size and colour the study asks for.

The validation slice is a seeded permutation of the train examples (as it always was for TFDS
names, so the default study's splits are unchanged); a test slice taken from train, where the data
have no test split, is stratified by class and drawn from a stream of its own.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from harness.config import ConfigError, DatasetConfig

log = logging.getLogger(__name__)
# Mixed into the study's seed for the test slice of a dataset without a test split.
TEST_STREAM = 21
LIMIT_STREAM = 22  # and for the draw of `dataset.limit` examples of each split


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


def stratified_limit(positions: np.ndarray, labels: np.ndarray, limit: int | None, seed: int,
                     shares: np.ndarray | None = None) -> np.ndarray:
    """`limit` of `positions` (sorted), drawn so each class keeps its share of the data: class k
    gets `limit * shares[k] / sum(shares)` of them (`shares`: class counts of the whole source, by
    default those of `positions`), rounded by largest remainder, at least one while the limit
    allows one per class, and no more than `positions` hold (what one class lacks goes to the
    others, largest share first). Within a class the members are taken in a seeded random order,
    so a folder or an .npz stored class by class gives every class its share. `labels[i]` is the
    label at `positions[i]`. All of them when `limit` is None or not smaller.
    """
    if limit is None or limit >= len(positions):
        return np.sort(positions)
    labels = np.asarray(labels)
    k = int(max(labels.max(initial=-1) + 1, 0 if shares is None else len(shares)))
    have = np.bincount(labels, minlength=k)
    weight = (have if shares is None else np.asarray(shares, float)[:k]).astype(float)
    share = limit * weight / weight.sum()
    quota = np.minimum(np.floor(share).astype(int), have)
    if limit >= (have > 0).sum():
        quota = np.maximum(quota, (have > 0).astype(int))
    while quota.sum() > limit:  # the floor of one per class overshot: take back from the most over its share
        quota[np.argmax(np.where(quota > 1, quota - share, -np.inf))] -= 1
    for i in np.argsort(-(share - quota), kind="stable"):  # the rest, largest remainder first, within what is there
        if quota.sum() >= limit:
            break
        quota[i] += min(have[i] - quota[i], max(0, int(np.ceil(share[i] - quota[i]))))
    for i in np.argsort(-share, kind="stable"):  # what a class lacked: to the others, largest share first
        quota[i] += min(have[i] - quota[i], limit - quota.sum())
    rng = np.random.default_rng([seed, LIMIT_STREAM])
    picked = [rng.permutation(positions[labels == c])[:q] for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(picked))


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels, minlength=num_classes).tolist()


def partition(n_train: int, cfg: DatasetConfig, seed: int, labels: np.ndarray | None = None,
              test_slice: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(transfer, validation, test) positions in train; test is None unless `labels` are given
    and `test_slice`, in which case it is a stratified `cfg.test_fraction` of train (`stratified_test`).

    Validation is `cfg.validation_fraction` of what remains, by a permutation seeded with `seed`
    alone. With `cfg.limit` and `labels`, validation (at most `limit`, and no more than the
    fraction gives) and transfer (`limit` of the rest) are seeded, class-stratified draws from
    what remains (`stratified_limit`); without `labels`, each keeps its first `limit` (sorted; a
    source read in part stratifies them itself: see `limited`).
    """
    pool = np.arange(n_train)
    test = None
    if labels is not None and test_slice:
        test = stratified_test(labels, cfg.test_fraction, seed)
        pool = np.setdiff1d(pool, test)
    order = pool[np.random.default_rng(seed).permutation(len(pool))]
    n_val = round(cfg.validation_fraction * len(pool))
    val, transfer = np.sort(order[:n_val]), np.sort(order[n_val:])
    if cfg.limit is not None and labels is not None:  # every split a draw to the whole data's class shares
        shares = np.bincount(labels)
        val = stratified_limit(pool, labels[pool], min(cfg.limit, n_val), seed, shares)
        rest = np.setdiff1d(pool, val)
        transfer = stratified_limit(rest, labels[rest], cfg.limit, seed, shares)
        test = None if test is None else stratified_limit(test, labels[test], cfg.limit, seed, shares)
    elif cfg.limit is not None:
        val, transfer = val[:cfg.limit], transfer[:cfg.limit]
    return transfer, val, test


def limited(positions: np.ndarray, labels_read: np.ndarray, cfg: DatasetConfig, seed: int) -> np.ndarray:
    """For a source read in part (TFDS): `stratified_limit` of candidate `positions` (sorted) whose
    labels are `labels_read[positions]`."""
    return stratified_limit(positions, labels_read[positions], cfg.limit, seed)


def assemble(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
             cfg: DatasetConfig, seed: int) -> tuple[Split, Split, Split, str]:
    """Transfer, validation and test splits of in-memory train (and test) arrays, and where the test
    split came from ("test", or "train (stratified 10%)" when `test` is None). With `cfg.limit`,
    every split is a seeded, class-stratified draw of `limit` examples."""
    x, y = train
    transfer, val, test_pos = partition(len(y), cfg, seed, labels=y, test_slice=test is None)
    if test is None:
        return (take(x, y, transfer), take(x, y, val), take(x, y, test_pos),
                f"train (stratified {cfg.test_fraction:.0%})")
    tx, ty = test
    keep = stratified_limit(np.arange(len(ty)), ty, cfg.limit, seed)
    return take(x, y, transfer), take(x, y, val), take(tx, ty, keep), "test"


def check_classes(splits: dict[str, Split], num_classes: int, names: list[str], where: str) -> None:
    """Log each split's class counts; warn about a split where a class has no example."""
    for role, split in splits.items():
        counts = class_counts(split.labels, num_classes)
        log.info("%s %s split: %d examples, per class %s", where, role, len(split), counts)
        missing = [names[k] if k < len(names) else str(k) for k, c in enumerate(counts) if c == 0]
        if missing and len(split):
            log.warning("%s: the %s split has no example of class(es) %s%s", where, role,
                        ", ".join(missing[:10]), " ..." if len(missing) > 10 else "")


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
