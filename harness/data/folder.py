"""Your images as a folder: one subfolder per class, each file decoded by Pillow (`decode`).

Two layouts: `PATH/train/<class>/...` (with `PATH/test/<class>/...` for a test split), or
`PATH/<class>/...`, whose test split is then a seeded, stratified `dataset.test_fraction` of it.
Class names are the subfolder names, sorted (Keras' order: class i is the i-th name); files are
found in a class folder and its subfolders, in sorted path order. Folders and files whose name
starts with a dot (`.ipynb_checkpoints`) are skipped, as `keras.utils.image_dataset_from_directory`
skips them, and counted in the log. Every file's header is read first (Pillow) to check the
layout, find the images' size (as shown: an EXIF orientation that turns the image swaps height and
width) and colour, and refuse in one line what would otherwise be a traceback or a silent surprise:
a missing or empty folder, an empty class, a file that is not an image or is a decompression bomb,
mixed sizes without `dataset.image_size`, data over the memory limit. Then each file is decoded as
a viewer shows it (EXIF orientation applied) and resized, where `image_size` asks, bilinearly
without antialiasing, as Keras' reader resizes; a file whose pixels cannot be decoded (truncated)
is named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import ConfigError, DatasetConfig
from harness.data import decode, splitting

log = logging.getLogger(__name__)
FORMATS = decode.FORMATS
GRAY_MODES = decode.GRAY_MODES
FIELD = "dataset.folder"


@dataclass
class Scan:
    """One part (train or test) of the folder: its class folders and their image files."""
    root: Path
    files: dict[str, list[Path]]  # class name -> image files (sorted)
    sizes: dict[tuple[int, int], Path]  # (height, width) as shown -> a file of that size
    gray: bool  # every image has one colour channel
    hidden: int = 0  # dot-folders and dot-files skipped
    oriented: int = 0  # files with an EXIF orientation other than "as stored"

    @property
    def count(self) -> int:
        return sum(len(f) for f in self.files.values())


def _scan(root: Path, source: str, empty_classes_ok: bool = False) -> Scan:
    if not root.is_dir():
        raise ConfigError(source, FIELD, f"{root}: no such folder")
    entries = list(root.iterdir())
    hidden = sum(1 for p in entries if p.name.startswith("."))
    classes = sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))
    if not classes:
        what = "is empty" if not entries else "has no class subfolders"
        raise ConfigError(source, FIELD, f"{root} {what}: give one subfolder of images per class")
    files, sizes, gray, oriented = {}, {}, True, 0
    for name in classes:
        found, skipped = decode.visible(root / name)
        hidden += skipped
        if not found and not empty_classes_ok:
            raise ConfigError(source, FIELD, f"class {name!r} ({root / name}) holds no image "
                                             f"({', '.join(FORMATS)} files)")
        for f in found:
            try:
                h, w, mode, turned = decode.header(f)
            except decode.Unreadable as e:
                raise ConfigError(source, FIELD, str(e)) from None
            sizes.setdefault((h, w), f)
            gray = gray and mode in GRAY_MODES
            oriented += turned
        files[name] = found
    return Scan(root, files, sizes, gray, hidden, oriented)


def _pixels(scan: Scan, classes: list[str], size: tuple[int, int], color_mode: str, source: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the part as uint8 [n, h, w, c] and its class id (int64 [n]), in class then
    file order: decoded by Pillow as shown (`decode.pixels`), resized to `size` where it differs."""
    channels = 1 if color_mode == "grayscale" else 3
    out = np.empty((scan.count, *size, channels), np.uint8)
    labels = np.empty(scan.count, np.int64)
    i = 0
    for k, name in enumerate(classes):
        for f in scan.files[name]:
            try:
                x = decode.pixels(f, channels)
            except decode.Unreadable as e:
                raise ConfigError(source, FIELD, str(e)) from None
            if x.shape[:2] != tuple(size):
                x = np.asarray(splitting.adapt(x[None], list(size), None))[0]
            out[i], labels[i] = x, k
            i += 1
    return out, labels


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
    log.info("dataset.folder %s: %d images in %d classes (%s), %dx%d %s, decoded by Pillow", root, n,
             len(classes), "train/ and test/" if test else "one folder", size[0], size[1], color)
    hidden = train.hidden + (test.hidden if test else 0)
    if hidden:
        log.info("dataset.folder %s: %d hidden file(s) or folder(s) (names starting with '.') skipped", root, hidden)
    oriented = train.oriented + (test.oriented if test else 0)
    if oriented:
        log.info("dataset.folder %s: %d image(s) carry an EXIF orientation; read turned as a viewer shows them",
                 root, oriented)
    out_train = _pixels(train, classes, size, color, source)
    out_test = _pixels(test, classes, size, color, source) if test is not None and test.count else None
    return out_train, out_test, classes
