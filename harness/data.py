"""TFDS splits as in-memory arrays and the tf.data pipelines built from them.

The transfer set is the train split minus a seeded validation slice; the test
split is only read for final reports. Arrays stay in memory (Fashion-MNIST is
47 MB as uint8) so a study builds them once and every trial reuses them.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from .config import ConfigError, DatasetConfig, TransferConfig, UserError

log = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# SHA-256 of the *decompressed* IDX files. Debian re-compressed the upstream
# .gz files, so TFDS's checksums (of the .gz bytes) cannot match; the content
# inside is the same, and these hashes equal those of the upstream files
# decompressed (the publisher's archives, whose MD5s are in its README).
FASHION_MNIST_IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# (magic, count) in each IDX header: 2051 = images, 2049 = labels.
_IDX_HEADERS = {
    "train-images-idx3-ubyte": (2051, 60000), "train-labels-idx1-ubyte": (2049, 60000),
    "t10k-images-idx3-ubyte": (2051, 10000), "t10k-labels-idx1-ubyte": (2049, 10000),
}
INSTALL_HINT = "apt-get update && apt-get install -y dataset-fashion-mnist"


class DataError(UserError):
    """The data cannot be had: what is missing and what to run."""


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


# ---------------------------------------------------------------- Fashion-MNIST offline


def _verified_idx(src_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Decompress Debian's files and check content hash and IDX header of each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, want in FASHION_MNIST_IDX_SHA256.items():
        gz = src_dir / f"{stem}.gz"
        if not gz.is_file():
            raise DataError(f"{gz} is missing: install Fashion-MNIST with `{INSTALL_HINT}`")
        raw = gzip.decompress(gz.read_bytes())
        got = hashlib.sha256(raw).hexdigest()
        if got != want:
            raise DataError(f"{gz}: decompressed SHA-256 {got} is not Fashion-MNIST's {want}")
        magic, count = struct.unpack(">II", raw[:8])
        if (magic, count) != _IDX_HEADERS[stem]:
            raise DataError(f"{gz}: IDX header {(magic, count)} != {_IDX_HEADERS[stem]}")
        out = out_dir / stem
        out.write_bytes(raw)
        paths[stem] = out
    return paths


def prepare_fashion_mnist(data_dir: str | None = None, src_dir: Path = DEBIAN_DIR) -> None:
    """Build TFDS's real `fashion_mnist` from the Debian package, once.

    TFDS's own builder code writes the dataset; only where the four IDX files
    come from changes. Afterwards `tfds.load("fashion_mnist")` works offline.
    """
    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    if builder.is_prepared():
        return
    if not src_dir.is_dir():
        raise DataError(f"fashion_mnist is not built and {src_dir} is missing: run `{INSTALL_HINT}` "
                        "(or `make data`), or give a machine with internet access")
    staging = Path(builder.data_dir_root) / "downloads" / "debian-fashion-mnist"
    files = _verified_idx(src_dir, staging)
    log.warning("fashion_mnist: building from Debian's %s; TFDS's .gz checksums are skipped "
                "because Debian re-compressed the files; the decompressed content was verified "
                "against Fashion-MNIST's SHA-256 and IDX headers instead", src_dir)

    with tfds.core.registered.skip_registration():
        class _FromDebian(tfds_mnist.FashionMNIST):
            name = "fashion_mnist"
            __module__ = tfds_mnist.__name__  # dataset_info.json as TFDS itself writes it

            def _split_generators(self, dl_manager):
                def gen(prefix, n):
                    return tfds.core.SplitGenerator(
                        name=tfds.Split.TRAIN if prefix == "train" else tfds.Split.TEST,
                        gen_kwargs=dict(num_examples=n,
                                        data_path=str(files[f"{prefix}-images-idx3-ubyte"]),
                                        label_path=str(files[f"{prefix}-labels-idx1-ubyte"])))
                return [gen("train", 60000), gen("t10k", 10000)]

    _FromDebian(data_dir=data_dir).download_and_prepare()
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- splits


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


# ---------------------------------------------------------------- the student's transfer set

# Mixed into the study's seed for the subset's draw, so it is a stream of its own (the
# validation slice uses the seed alone).
SUBSET_STREAM = 12


def transfer_positions(labels: np.ndarray, cfg: TransferConfig, seed: int) -> np.ndarray:
    """Positions (sorted) in the transfer split of the examples the student learns from.

    The omitted classes are dropped; of every other class, `fraction` of its
    examples (rounded, at least one) are kept, drawn with the study's seed: a
    class-stratified subset that the same file and seed always draw alike. Only
    the transfer split is ever cut: validation and test stay whole.
    """
    if cfg.default:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, SUBSET_STREAM])
    omitted = set(cfg.omit_classes or [])
    keep = []
    for k in np.unique(labels):  # in class order, so the draw does not depend on the examples' order
        if int(k) in omitted:
            continue
        members = np.flatnonzero(labels == k)
        n = max(1, int(round(cfg.fraction * len(members))))
        keep.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def subset(split: Split, positions: np.ndarray) -> Split:
    return Split(split.images[positions], split.labels[positions], split.index[positions])


# ---------------------------------------------------------------- pipelines


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
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    k = max_shift
    padded = tf.pad(images, [[0, 0], [k, k], [k, k], [0, 0]])
    offsets = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=2 * k + 1, dtype=tf.int32)
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
    # The autotuner off: with it on, the end of an epoch often waited for its
    # next wake-up (10 ms, 20 ms, ... doubling), so an MLP epoch of 3.4 s of
    # steps took 5.1 s (seen while building `harness bench`); off, steps run as fast.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def labels_only(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Drop the cached teacher logits: the same batches, for hard-label training."""
    return ds.map(lambda x, y: (x, y["labels"]))
