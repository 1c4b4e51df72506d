"""Your images as a folder: one subfolder per class, read with `keras.utils.image_dataset_from_directory`.

Two layouts: `PATH/train/<class>/...` (with `PATH/test/<class>/...` for a test split), or
`PATH/<class>/...`, whose test split is then a seeded, stratified `dataset.test_fraction` of it.
Class names are the subfolder names, sorted (Keras' order: class i is the i-th name). Before Keras
reads a pixel, every file's header is read (Pillow) to check the layout, find the images' size and
colour, and refuse in one line what would otherwise be a traceback or a silent surprise: a missing
or empty folder, an empty class, a file that is not an image, mixed sizes without
`dataset.image_size`, data over the memory limit. A file whose pixels cannot be decoded (truncated)
is found and named when Keras fails on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import ConfigError, DatasetConfig
from harness.data import splitting

log = logging.getLogger(__name__)
# The files `image_dataset_from_directory` reads (keras.src.utils.image_dataset_utils.ALLOWLIST_FORMATS).
FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # Pillow modes with one colour channel
FIELD = "dataset.folder"


@dataclass
class Scan:
    """One part (train or test) of the folder: its class folders and their image files."""
    root: Path
    files: dict[str, list[Path]]  # class name -> image files (sorted)
    sizes: dict[tuple[int, int], Path]  # (height, width) -> a file of that size
    gray: bool  # every image has one colour channel

    @property
    def count(self) -> int:
        return sum(len(f) for f in self.files.values())


def _scan(root: Path, source: str, empty_classes_ok: bool = False) -> Scan:
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise ConfigError(source, FIELD, f"{root}: no such folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        what = "is empty" if not any(root.iterdir()) else "has no class subfolders"
        raise ConfigError(source, FIELD, f"{root} {what}: give one subfolder of images per class")
    files, sizes, gray = {}, {}, True
    for name in classes:
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        if not found and not empty_classes_ok:
            raise ConfigError(source, FIELD, f"class {name!r} ({root / name}) holds no image "
                                             f"({', '.join(FORMATS)} files)")
        for f in found:
            try:
                with Image.open(f) as im:
                    w, h = im.size
                    mode = im.mode
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise ConfigError(source, FIELD, f"{f}: not a readable image ({type(e).__name__})") from None
            sizes.setdefault((h, w), f)
            gray = gray and mode in GRAY_MODES
        files[name] = found
    return Scan(root, files, sizes, gray)


def _pixels(scan: Scan, classes: list[str], size: tuple[int, int], color_mode: str, source: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the part as uint8 [n, h, w, c] and its class id (int64 [n]), Keras' file order."""
    import keras
    import tensorflow as tf

    ds = keras.utils.image_dataset_from_directory(
        str(scan.root), labels="inferred", label_mode="int", class_names=classes, color_mode=color_mode,
        batch_size=256, image_size=size, shuffle=False, interpolation="bilinear", verbose=False)
    xs, ys = [], []
    try:
        for x, y in ds:
            xs.append(np.clip(np.rint(x.numpy()), 0, 255).astype(np.uint8))
            ys.append(y.numpy().astype(np.int64))
    except tf.errors.OpError:
        channels = 1 if color_mode == "grayscale" else 3
        for f in ds.file_paths:  # which file: decode each alone, as Keras does
            try:
                tf.io.decode_image(tf.io.read_file(f), channels=channels, expand_animations=False)
            except tf.errors.OpError as e:
                reason = (e.message.strip().splitlines() or ["cannot be decoded"])[0][:100]
                raise ConfigError(source, FIELD, f"{f}: unreadable or truncated image ({reason})") from None
        raise
    return np.concatenate(xs), np.concatenate(ys)


def read(cfg: DatasetConfig, source: str) -> tuple[tuple, tuple | None, list[str]]:
    """((train images, labels), (test images, labels) or None, class names) of `cfg.folder`.

    Images are uint8 [n, h, w, c] (c: 1 for grayscale, 3 for rgb; `color_mode: null` is grayscale
    when every file is), resized to `cfg.image_size` when given; labels int64 class ids.
    Raises ConfigError (one line naming the field and the file) for the mistakes in the module's
    docstring.
    """
    root = Path(cfg.folder)
    if not root.is_dir():
        raise ConfigError(source, FIELD, f"{root}: no such folder")
    split_dirs = (root / "train").is_dir()
    train = _scan(root / "train" if split_dirs else root, source)
    test = _scan(root / "test", source, empty_classes_ok=True) if (root / "test").is_dir() and split_dirs \
        else None
    classes = list(train.files)
    if len(classes) < 2:
        raise ConfigError(source, FIELD, f"{train.root} has one class folder ({classes[0]!r}); "
                                         "a classifier needs at least two")
    if test is not None and list(test.files) != classes:
        raise ConfigError(source, FIELD, f"{test.root} has the classes {list(test.files)}, {train.root} has "
                                         f"{classes}: give both the same class subfolders")
    sizes = {**train.sizes, **(test.sizes if test else {})}
    if cfg.image_size is None and len(sizes) > 1:
        (a, fa), (b, fb) = list(sizes.items())[:2]
        raise ConfigError(source, "dataset.image_size",
                          f"the images in {root} vary in size ({a[0]}x{a[1]} {fa.name}, {b[0]}x{b[1]} {fb.name}); "
                          "give dataset.image_size: [height, width] to resize them")
    size = tuple(cfg.image_size or next(iter(sizes)))
    color = cfg.color_mode or ("grayscale" if train.gray and (test is None or test.gray) else "rgb")
    n = train.count + (test.count if test else 0)
    splitting.check_memory(n, (*size, 1 if color == "grayscale" else 3), cfg, source)
    log.info("dataset.folder %s: %d images in %d classes (%s), %dx%d %s", root, n, len(classes),
             "train/ and test/" if test else "one folder", size[0], size[1], color)
    out_train = _pixels(train, classes, size, color, source)
    out_test = _pixels(test, classes, size, color, source) if test is not None and test.count else None
    return out_train, out_test, classes
