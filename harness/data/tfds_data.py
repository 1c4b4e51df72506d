"""A TFDS image-classification dataset by name, in memory: prepared offline, or downloaded where the
machine has a network, and refused in one line where it needs a download the machine cannot make.

Fashion-MNIST is built offline from Debian's package (`fashion_mnist.py`). Any other name that is
not prepared in its `data_dir` needs a download: without a network that fails within seconds,
naming `dataset.name`, and leaves the data dir as it was (TFDS's own downloader retries for
minutes, then leaves partial files). A dataset without a `test` split gets a seeded, stratified
test slice of `train`; one whose images vary in size needs `dataset.image_size`. Within one process a
split is decoded once: a later read is a slice of the arrays held (`_MEMO`); across processes, a
decoded split is kept on disk (`disk_cache()`) and loaded instead of decoded again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from harness.config import ConfigError, DatasetConfig
from harness.data import splitting
from harness.data.fashion_mnist import prepare_fashion_mnist

log = logging.getLogger(__name__)
# Where TFDS itself keeps datasets (`try_gcs`) and many datasets' files: reachable means online.
PROBE_URL = "https://storage.googleapis.com/tfds-data/"
PROBE_SECONDS = 5.0
# With `dataset.limit`, each split's stratified draw is made among its first CANDIDATES x limit
# examples (in index order): only that part of a large dataset is read and decoded. Class shares
# are those of the candidates (a TFDS split stored class by class would need all of it read).
CANDIDATES = 2


@dataclass
class Read:
    transfer: splitting.Split
    validation: splitting.Split
    test: splitting.Split
    class_names: list[str]
    num_classes: int
    image_shape: tuple[int, int, int]
    test_source: str  # "test", or "train (stratified 10%)"


def online(url: str | None = None, seconds: float = PROBE_SECONDS) -> bool:
    """Whether an HTTP request to `url` (default PROBE_URL) gets any answer within `seconds` (through
    the proxies requests finds, as TFDS' own downloads)."""
    import requests

    url = url or PROBE_URL

    answered = []

    def probe():
        try:
            requests.head(url, timeout=seconds)
            answered.append(True)
        except requests.RequestException:
            pass

    t = threading.Thread(target=probe, daemon=True)  # a DNS lookup can outlast requests' own timeout
    t.start()
    t.join(seconds)
    return bool(answered)


def _entries(root: Path, name: str) -> set[Path]:
    """What exists in the data dir where TFDS writes a download (to remove only what it adds)."""
    found = {root} if root.exists() else set()
    for d in (root, root / "downloads", root / "downloads" / "extracted", root / name):
        if d.is_dir():
            found.update(d.iterdir())
    return found


def _remove_new(before: set[Path], root: Path, name: str) -> None:
    for p in sorted(_entries(root, name) - before, key=lambda p: len(p.parts), reverse=True):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def prepare(builder, cfg: DatasetConfig, source: str) -> None:
    """Download and prepare `builder` unless it is prepared; a failure is one ConfigError on
    `dataset.name`, and whatever the attempt added to the data dir is removed."""
    if builder.is_prepared():
        return
    root = Path(builder.data_dir_root)
    before = _entries(root, cfg.name)
    fix = (f"run the study once on a machine with internet access, point dataset.data_dir at a folder where "
           f"{cfg.name!r} is prepared, or use your own images with dataset.folder")
    try:
        if not online():
            raise ConfigError(source, "dataset.name", f"{cfg.name!r} is not prepared in {root} and needs a "
                                                      f"download, but this machine has no network; {fix}")
        log.info("%s: not prepared in %s; downloading it (TFDS)", cfg.name, root)
        builder.download_and_prepare()
    except ConfigError:
        _remove_new(before, root, cfg.name)
        raise
    except Exception as e:  # noqa: BLE001 - any failed download or build: the user's data, said in one line
        _remove_new(before, root, cfg.name)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ConfigError(source, "dataset.name", f"{cfg.name!r} could not be downloaded and prepared in {root} "
                                                  f"({type(e).__name__}: {first}); {fix}") from None


# Decoded splits this process has read, by (prepared dataset dir, conversion, split name): each holds
# the longest prefix read so far, read-only, and a request for a shorter one is a slice of it. One
# process may read the same split many times (a study and its `harness finish`, the bench's three
# studies, the test suite's in-process studies: 89 reads, 131 s of its 1,040 s on the Intel host), and
# Fashion-MNIST's 60,000 training records take 3-4 s to parse and decode on these CPUs (its two splits
# hold 55 MB). Held up to MEMO_MB in all, the oldest dropped first: a larger dataset is read each time,
# as before, rather than held twice (the splits a study keeps are copies).
_MEMO: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
MEMO_MB = 512


def _decode(builder, split: str, cfg: DatasetConfig, convert: bool) -> tuple[np.ndarray, np.ndarray]:
    if not convert:
        x, y = tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True, batch_size=-1))
        return np.asarray(x), np.asarray(y).astype(np.int64)
    ds = builder.as_dataset(split=split, as_supervised=True)
    ds = ds.map(lambda x, y: (splitting.adapt(x, cfg.image_size, cfg.color_mode), y)).batch(1024)
    xs, ys = zip(*tfds.as_numpy(ds))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


# Decoded splits kept on disk, for the next process: every `harness` command and each `--workers`
# process decoded the same split again, 3-4 s for Fashion-MNIST's training split
# on these CPUs, against 0.1-0.2 s to load its 47 MB of .npy (docs/performance.md, "The test
# suite"). Neither TFDS nor tf.data keeps decoded images across processes in a form that loads faster
# (`Dataset.cache(filename)` still yields element by element). The key holds the prepared files'
# names, sizes and modification times, the conversion and DISK_FORMAT, so a re-prepared dataset or a
# changed conversion is decoded afresh; each file is written whole (a temporary file, then a
# rename). Held like `_MEMO`: a prefix, replaced by a longer one; at most MEMO_MB a split.
# `KD_HARNESS_CACHE` moves it (default ~/.cache/kd-harness); `KD_HARNESS_CACHE=off` turns it off.
DISK_FORMAT = 1


def disk_cache() -> Path | None:
    """The folder decoded splits are kept in (`tfds/` under it), or None when `KD_HARNESS_CACHE=off`."""
    where = os.environ.get("KD_HARNESS_CACHE", "")
    if where.lower() == "off":
        return None
    try:
        return Path(where) if where else Path.home() / ".cache" / "kd-harness"
    except RuntimeError:  # no home directory to be found: nothing kept
        return None


def _disk_path(builder, key: tuple) -> Path | None:
    root = disk_cache()
    if root is None:
        return None
    data_dir = Path(builder.data_dir)
    try:
        stats = [(f.name, f.stat()) for f in data_dir.iterdir() if f.is_file()]
        files = sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats)
    except OSError:
        return None
    digest = hashlib.sha256(json.dumps([DISK_FORMAT, str(data_dir), files, key[1:]], default=str).encode())
    return root / "tfds" / digest.hexdigest()[:24]


def _load_disk(path: Path | None, want: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The disk cache's prefix of the split when it holds at least `want` examples, else None (missing,
    shorter or unreadable)."""
    if path is None:
        return None
    try:
        x, y = np.load(path / "x.npy"), np.load(path / "y.npy")
    except (OSError, ValueError):
        return None
    n = min(len(x), len(y))  # any two files are prefixes of the same split, written by any process
    return (x[:n], y[:n]) if n >= want else None


def _save_disk(path: Path | None, x: np.ndarray, y: np.ndarray) -> None:
    if path is None or x.nbytes + y.nbytes > MEMO_MB * 2**20:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name, a in (("y.npy", y), ("x.npy", x)):
            fd, tmp = tempfile.mkstemp(dir=path, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, a)
            os.replace(tmp, path / name)
    except OSError as e:  # a read-only or full disk: the next process decodes again, nothing else
        log.debug("decoded split not kept in %s: %s", path, e)


def _read(builder, name: str, n: int | None, cfg: DatasetConfig, convert: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` examples of split `name` (all where None): uint8 images [n, h, w, c], int64 labels,
    both read-only (views of `_MEMO`'s arrays: a caller copies before it changes them)."""
    key = (str(builder.data_dir), convert and (tuple(cfg.image_size or ()), cfg.color_mode), name)
    held = _MEMO.get(key)
    total = builder.info.splits[name].num_examples
    want = total if n is None else min(n, total)
    if held is None or len(held[1]) < want:
        disk = _disk_path(builder, key)
        loaded = _load_disk(disk, want)
        if loaded is None:
            x, y = _decode(builder, name if want == total else f"{name}[:{want}]", cfg, convert)
            _save_disk(disk, x, y)
        else:
            x, y = loaded
        for a in (x, y):
            a.setflags(write=False)
        _MEMO.pop(key, None)
        size, limit = x.nbytes + y.nbytes, MEMO_MB * 2**20
        while _MEMO and sum(a.nbytes + b.nbytes for a, b in _MEMO.values()) + size > limit:
            del _MEMO[next(iter(_MEMO))]  # the oldest
        if size <= limit:
            _MEMO[key] = (x, y)
        held = (x, y)
    x, y = held
    return x[:want], y[:want]


def read(cfg: DatasetConfig, seed: int, source: str) -> Read:
    """The transfer, validation and test splits of the TFDS dataset `cfg.name` (see the module).

    Raises ConfigError (field `dataset.name`, `dataset.image_size` or `dataset.max_memory_mb`) for
    an unknown name, a needed download that cannot be made, images of varying size without
    `image_size`, a dataset that is not (image, label) classification, or data over the memory limit.
    """
    if cfg.name == "fashion_mnist":
        prepare_fashion_mnist(cfg.data_dir)
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(source, "dataset.name", f"unknown TFDS dataset {cfg.name!r} ({first[:120]})") from None
    features = builder.info.features
    if not {"image", "label"} <= set(getattr(features, "keys", list)()):
        raise ConfigError(source, "dataset.name", f"{cfg.name!r} is not an image classification dataset with "
                                                  "'image' and 'label' features")
    shape = tuple(features["image"].shape)
    if None in shape[:2] and cfg.image_size is None:
        raise ConfigError(source, "dataset.image_size", f"the images of {cfg.name!r} vary in size {shape}; "
                                                        "give dataset.image_size: [height, width] to resize them")
    channels = {"grayscale": 1, "rgb": 3}.get(cfg.color_mode, shape[2] or 3)
    out_shape = (*(cfg.image_size or shape[:2]), channels)
    convert = tuple(out_shape) != shape
    prepare(builder, cfg, source)
    splits = builder.info.splits
    if "train" not in splits:
        raise ConfigError(source, "dataset.name", f"{cfg.name!r} has no 'train' split (it has "
                                                  f"{', '.join(splits.keys())})")
    n_train = splits["train"].num_examples
    has_test = "test" in splits
    n_test = (splits["test"].num_examples if has_test else 0)
    if cfg.limit is not None:  # candidates for the stratified draw, read in part (see CANDIDATES)
        n_test = min(n_test, CANDIDATES * cfg.limit)
    needed = n_train
    if has_test:
        transfer, val, _ = splitting.partition(n_train, dataclasses.replace(cfg, limit=None), seed)
        if cfg.limit is not None:
            transfer, val = transfer[:CANDIDATES * cfg.limit], val[:CANDIDATES * cfg.limit]
        needed = int(max(val.max(initial=-1), transfer.max(initial=-1))) + 1
    splitting.check_memory(needed + n_test, out_shape, cfg, source)
    if has_test:
        x, y = _read(builder, "train", needed, cfg, convert)
        tx, ty = _read(builder, "test", n_test, cfg, convert)
        keep = splitting.stratified_limit(np.arange(len(ty)), ty, cfg.limit, seed)
        parts = (splitting.take(x, y, splitting.limited(transfer, y, cfg, seed)),
                 splitting.take(x, y, splitting.limited(val, y, cfg, seed)),
                 splitting.Split(tx[keep], ty[keep], keep), "test")
    else:
        x, y = _read(builder, "train", None, cfg, convert)
        parts = splitting.assemble((x, y), None, cfg, seed)
        log.warning("%s has no 'test' split: the test split is a seeded, stratified %.0f%% of 'train' "
                    "(dataset.test_fraction)", cfg.name, 100 * cfg.test_fraction)
    label = features["label"]
    return Read(*parts[:3], class_names=list(label.names), num_classes=label.num_classes,
                image_shape=tuple(int(d) for d in x.shape[1:]), test_source=parts[3])
