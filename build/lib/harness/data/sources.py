"""Where the images come from: a TFDS dataset as in-memory transfer, validation and test splits.

The transfer set is the train split minus a seeded validation slice; the test
split is only read for final reports. Arrays stay in memory (Fashion-MNIST is
47 MB as uint8) so a study builds them once and every trial reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow_datasets as tfds

from harness.config import ConfigError, DatasetConfig
from harness.data.fashion_mnist import prepare_fashion_mnist


@dataclass
class Split:
    images: np.ndarray  # uint8 [n, h, w, c], as the dataset gives them
    labels: np.ndarray  # int64 [n]
    index: np.ndarray  # each example's position in its TFDS split

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    transfer: Split
    validation: Split
    test: Split
    num_classes: int
    image_shape: tuple[int, int, int]
    dataset: str


def _read(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, batch_size=-1))
    return np.asarray(x), np.asarray(y).astype(np.int64)


def load_splits(cfg: DatasetConfig, seed: int, source: str = "<dataset>") -> Splits:
    """Transfer, validation and test splits of a TFDS image-classification dataset.

    The validation slice is a seeded permutation of the train split, so the
    same (dataset, fraction, seed) always gives the same disjoint splits.
    With `limit`, each split keeps its first `limit` examples, and only the
    part of the train split that holds them is read and decoded.
    """
    if cfg.name == "fashion_mnist":
        prepare_fashion_mnist(cfg.data_dir)
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(source, "dataset.name", f"unknown TFDS dataset {cfg.name!r} ({first[:120]})") from None
    builder.download_and_prepare()  # no-op once prepared; the download otherwise (online names)
    n_train = builder.info.splits["train"].num_examples
    order = np.random.default_rng(seed).permutation(n_train)
    n_val = int(round(cfg.validation_fraction * n_train))
    val_idx, transfer_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if cfg.limit is not None:
        val_idx, transfer_idx = val_idx[:cfg.limit], transfer_idx[:cfg.limit]
    needed = int(max(val_idx.max(initial=-1), transfer_idx.max(initial=-1))) + 1
    train_x, train_y = _read(builder, f"train[:{needed}]" if needed < n_train else "train")
    test_x, test_y = _read(builder, f"test[:{cfg.limit}]" if cfg.limit is not None else "test")
    return Splits(
        transfer=Split(train_x[transfer_idx], train_y[transfer_idx], transfer_idx),
        validation=Split(train_x[val_idx], train_y[val_idx], val_idx),
        test=Split(test_x, test_y, np.arange(len(test_y))),
        num_classes=builder.info.features["label"].num_classes,
        image_shape=tuple(builder.info.features["image"].shape),
        dataset=cfg.name,
    )
