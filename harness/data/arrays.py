"""Your images as arrays: an `.npz` with `x_train`, `y_train` (and `x_test`, `y_test`; optionally
`class_names`), as `numpy.savez` writes it.

Images are uint8 or float with values 0-255, shaped [n, h, w] or [n, h, w, c] with c 1 or 3;
labels are integer class ids 0..K-1, where K is the length of `class_names` or else the largest
train label plus one. The shapes and dtypes are read from the file's headers first, so data over
the memory limit are refused before they are loaded (`allow_pickle=False` always).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from harness.config import ConfigError, DatasetConfig
from harness.data import splitting

FIELD = "dataset.arrays"


def _headers(path: Path, source: str) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) of every array in the .npz, from the headers alone."""
    try:
        with zipfile.ZipFile(path) as z:
            out = {}
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                out[info.filename[:-4]] = (shape, dtype)
            return out
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ConfigError(source, FIELD, f"{path}: not an .npz file ({type(e).__name__})") from None


def _images(x: np.ndarray, key: str, where: str) -> np.ndarray:
    """`x` as uint8 [n, h, w, c], or a one-line reason."""
    if x.ndim == 3:
        x = x[..., None]
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{key} holds non-finite values")
        if x.size and x.max() <= 1.0:
            raise ValueError(f"{key} holds values in [0, 1]; give images with values 0-255 (multiply by 255)")
        x = np.rint(x)
    elif not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{key} has dtype {x.dtype}; give uint8 or float images with values 0-255")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"{key} holds values outside 0-255 ({x.min():g} to {x.max():g})")
    return x.astype(np.uint8)


def read(cfg: DatasetConfig, source: str) -> tuple[tuple, tuple | None, list[str]]:
    """((train images, labels), (test images, labels) or None, class names) of `cfg.arrays`.

    Images uint8 [n, h, w, c], resized to `cfg.image_size` and converted to `cfg.color_mode` when
    given; labels int64. Raises ConfigError on `dataset.arrays` for a missing file or key, a wrong
    shape or dtype, labels out of range or a class without training examples, and on
    `dataset.max_memory_mb` for data over the limit.
    """
    path = Path(cfg.arrays)
    if not path.is_file():
        raise ConfigError(source, FIELD, f"{path}: no such file")
    heads = _headers(path, source)

    def fail(message: str):
        raise ConfigError(source, FIELD, f"{path}: {message}")

    missing = [k for k in ("x_train", "y_train") if k not in heads]
    if ("x_test" in heads) != ("y_test" in heads):
        missing.append("y_test" if "x_test" in heads else "x_test")
    if missing:
        fail(f"missing {', '.join(missing)} (has {', '.join(sorted(heads)) or 'no arrays'}); give x_train, "
             "y_train and, for a test split, x_test and y_test")
    parts = ["train"] + (["test"] if "x_test" in heads else [])
    used = [f"{a}_{p}" for p in parts for a in ("x", "y")] + (["class_names"] if "class_names" in heads else [])
    for key in used:
        if heads[key][1].hasobject:  # np.load refuses it (allow_pickle=False): Python objects need pickle
            fix = ("save the names as a string array: np.savez(..., class_names=np.array(names, dtype=str))"
                   if key == "class_names" else "save it as a numeric array (uint8 images, integer labels)")
            fail(f"{key} is an array of Python objects (dtype=object), which is not read without pickle; {fix}")
    for part in parts:
        (xs, _), (ys, _) = heads[f"x_{part}"], heads[f"y_{part}"]
        if len(xs) not in (3, 4) or (len(xs) == 4 and xs[3] not in (1, 3)):
            fail(f"x_{part} has shape {xs}; give [n, h, w] or [n, h, w, c] with c 1 or 3")
        if len(ys) != 1 or ys[0] != xs[0]:
            fail(f"y_{part} has shape {ys}; give one label per image of x_{part} ({xs[0]})")
    shapes = {heads[f"x_{p}"][0][1:3] for p in parts}
    if len(shapes) > 1 and cfg.image_size is None:
        fail(f"x_train and x_test differ in image size {sorted(shapes)}; give dataset.image_size to resize them")
    n = sum(heads[f"x_{p}"][0][0] for p in parts)
    itemsize = max(heads[f"x_{p}"][1].itemsize for p in parts)
    splitting.check_memory(n, heads["x_train"][0][1:], cfg, source, itemsize=itemsize)

    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in used}
    names = [str(c) for c in data["class_names"]] if "class_names" in data else None
    out = {}
    for part in parts:
        y = data[f"y_{part}"]
        if not np.issubdtype(y.dtype, np.integer):
            fail(f"y_{part} has dtype {y.dtype}; give integer class ids")
        try:
            x = _images(data[f"x_{part}"], f"x_{part}", part)
        except ValueError as e:
            fail(str(e))
        out[part] = (splitting.adapt_array(x, cfg.image_size, cfg.color_mode), y.astype(np.int64))
    k = len(names) if names is not None else int(out["train"][1].max(initial=-1)) + 1
    for part in parts:
        y = out[part][1]
        if y.size and (y.min() < 0 or y.max() >= k):
            fail(f"labels out of range: y_{part} holds {y.min()} to {y.max()}, the classes are 0 to {k - 1}"
                 + (" (class_names)" if names is not None else " (the largest train label)"))
    empty = sorted(set(range(k)) - set(np.unique(out["train"][1]).tolist()))
    if empty:
        fail(f"class(es) {empty[:10]} have no example in y_train; labels must be 0..K-1 with every class present")
    return out["train"], out.get("test"), names or [str(i) for i in range(k)]
