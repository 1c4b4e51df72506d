"""Unlabeled transfer images: `transfer.unlabeled` (an .npz or a folder) and `transfer.unlabeled_rest`.

The paper's transfer set need not be labeled (Hinton et al. 2015, section 2):
these images reach the distilled student through the teacher's soft targets
alone, with the label -1 that masks the hard term (`distill/losses.py`).
Scratch twins never see them.

* `unlabeled: PATH` (relative to the study file): an `.npz` whose `x` (or
  `x_train`) holds images `[n, h, w, c]` or `[n, h, w]` with values 0-255, or a
  folder of image files (PNG, JPEG, BMP, GIF), read with its subfolders (their
  names do not matter: no labels), dot-folders and dot-files skipped, each
  decoded by Pillow as a viewer shows it (EXIF orientation applied; `decode`).
  Every image must have the dataset's height, width and channels: nothing is
  resized silently.
* `unlabeled_rest: true`: the examples of the transfer split that `fraction`
  leaves out, of the classes not omitted (an omitted class stays unseen),
  without their labels: the "few labels, many images" experiment on a labeled
  dataset.

Every mistake is one `ConfigError` naming the field and the study file.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import numpy as np

from harness.config import ConfigError, TransferConfig

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def resolve_path(path: str, source: str) -> Path:
    """`path` as the study file `source` means it: relative to the study file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path(source).resolve().parent if source else Path.cwd()) / p


def digest(images: np.ndarray) -> str:
    """SHA-256 of the images' shape, dtype and bytes (what caches of their logits are keyed by)."""
    h = hashlib.sha256(f"{images.shape}{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()[:20]


def _as_uint8(x: np.ndarray, fail) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number) or x.size and (x.min() < 0 or x.max() > 255):
        fail(f"the images must hold values 0-255 (got dtype {x.dtype})")
    if np.issubdtype(x.dtype, np.floating) and x.size and not np.all(x == np.round(x)):
        fail("the images must hold whole values 0-255 (as uint8 images do); got fractions")
    return x.astype(np.uint8)


def _read_npz(p: Path, fail) -> np.ndarray:
    try:
        with np.load(p, allow_pickle=False) as z:
            names = list(z.keys())
            key = next((k for k in ("x", "x_train") if k in names), None)
            if key is None:
                fail(f"{p} has no array `x` or `x_train` (it has: {', '.join(names) or 'none'})")
            x = z[key]
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
        fail(f"cannot read {p} as .npz: {type(e).__name__}: {e}")
    return x[..., None] if x.ndim == 3 else x


def _read_folder(p: Path, channels: int, fail) -> np.ndarray:
    from harness.data import decode

    files, hidden = decode.visible(p)
    if not files:
        fail(f"{p} holds no image files ({', '.join(IMAGE_SUFFIXES)}), in it or in its subfolders")
    images, oriented = [], 0
    for f in files:
        try:
            oriented += decode.header(f)[3]
            img = decode.pixels(f, channels)
        except decode.Unreadable as e:
            fail(str(e))
        if images and img.shape != images[0].shape:
            fail(f"{f} is {'x'.join(map(str, img.shape))}, {files[0].name} is "
                 f"{'x'.join(map(str, images[0].shape))}: every image must have the dataset's size")
        images.append(img)
    log.info("unlabeled images: %d files in %s and its subfolders%s%s", len(files), p,
             f"; {hidden} hidden file(s) or folder(s) skipped" if hidden else "",
             f"; {oriented} turned by their EXIF orientation" if oriented else "")
    return np.stack(images)


@functools.lru_cache(maxsize=4)
def _read(path: str, source: str, image_shape: tuple, field: str, stamp: str) -> np.ndarray:
    def fail(message: str):
        raise ConfigError(source, field, message)

    p = resolve_path(path, source)
    if not p.exists():
        fail(f"no such file or folder: {p}")
    if p.is_dir():
        x = _read_folder(p, image_shape[-1], fail)
    elif p.suffix == ".npz":
        x = _read_npz(p, fail)
    else:
        fail(f"{p} is neither an .npz file nor a folder of images")
    if x.ndim != 4 or not len(x):
        fail(f"expected images [n, height, width, channels] (n >= 1), got shape {x.shape}")
    if tuple(x.shape[1:]) != tuple(image_shape):
        fail(f"the images are {'x'.join(map(str, x.shape[1:]))}, the dataset's are "
             f"{'x'.join(map(str, image_shape))} (height x width x channels)")
    x = _as_uint8(x, fail)
    x.setflags(write=False)
    return x


def read(t: TransferConfig, source: str, image_shape, field: str = "transfer.unlabeled") -> np.ndarray | None:
    """The images of `t.unlabeled`, uint8 `[n, h, w, c]` (None when unset); read once per process
    (until the file or folder changes). ConfigError for a missing, unreadable or ill-shaped one."""
    if t.unlabeled is None:
        return None
    p = resolve_path(t.unlabeled, source)
    return _read(t.unlabeled, source, tuple(int(d) for d in image_shape), field, _stamp(p))


def _stamp(p: Path) -> str:
    """What changes when the file, or any file in the folder and its subfolders, changes."""
    if not p.exists():
        return ""
    entries = sorted(p.rglob("*")) if p.is_dir() else [p]
    h = hashlib.sha256()
    for e in entries:
        st = e.stat()
        h.update(f"{e}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()


def rest_positions(labels: np.ndarray, t: TransferConfig, keep: np.ndarray) -> np.ndarray:
    """Positions (sorted) in the transfer split of `unlabeled_rest`'s examples: those `keep` leaves
    out, minus the omitted classes' (empty without `unlabeled_rest`)."""
    if not t.unlabeled_rest:
        return np.zeros(0, np.int64)
    out = np.ones(len(labels), bool)
    out[keep] = False
    out &= ~np.isin(labels, t.omit_classes or [])
    return np.flatnonzero(out)


def check(cfg, image_shape) -> None:
    """Before anything is written: every transfer section's unlabeled images (the file's and each
    confirmation arm's) read and fit the dataset (ConfigError otherwise). `cfg`: a StudyConfig."""
    read(cfg.transfer, cfg.source, image_shape)
    for i, arm in enumerate(cfg.confirm.arms or []):
        if arm.transfer is not None:
            read(arm.transfer, cfg.source, image_shape, f"confirm.arms[{i}].transfer.unlabeled")
