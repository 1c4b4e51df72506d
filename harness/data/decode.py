"""One decoder for every image file the harness reads: Pillow, as a viewer shows the image.

A folder of class subfolders (`folder`) and a folder of unlabeled images (`unlabeled`) are both
decoded here, so the pixels a model is trained on are the pixels a user gets from
`PIL.Image.open` (TensorFlow's own JPEG decoder, libjpeg-turbo's fast DCT by default, differs
from Pillow's by up to 20 grey levels on many pixels). Each file is:

* rotated or flipped by its EXIF orientation tag (`PIL.ImageOps.exif_transpose`: a phone's
  portrait photo is stored sideways with a tag saying so);
* converted to `L` (grayscale, Pillow's ITU-R 601-2 luma) or `RGB` (alpha dropped, a palette
  expanded);
* refused in one line when Pillow cannot read it, or when it is a decompression bomb (more than
  twice `PIL.Image.MAX_IMAGE_PIXELS`, 179 million pixels by default; Pillow's
  `DecompressionBombError` is not an `OSError`). A large image Pillow opens is read.

Only the first frame of an animated GIF is read (as Keras does with `expand_animations=False`).
Paths whose name, or the name of a folder between them and the root, starts with a dot
(`.ipynb_checkpoints`, `.DS_Store`) are not images of the data set: `visible` leaves them out, as
`keras.utils.image_dataset_from_directory` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# The files read (keras.src.utils.image_dataset_utils.ALLOWLIST_FORMATS).
FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # Pillow modes with one colour channel
EXIF_ORIENTATION = 0x0112
TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height


class Unreadable(ValueError):
    """A file Pillow cannot read as an image, or a decompression bomb: the one-line reason."""


def hidden(path: Path, root: Path) -> bool:
    """Whether `path` or a folder between it and `root` starts with a dot."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def visible(root: Path, recursive: bool = True) -> tuple[list[Path], int]:
    """(image files under `root`, sorted; how many files or folders were skipped as hidden)."""
    skipped = 0
    found = []
    for p in sorted(root.rglob("*") if recursive else root.iterdir()):
        if hidden(p, root):
            if p.name.startswith("."):  # count the hidden entry itself, not everything below it
                skipped += 1
            continue
        if p.is_file() and p.suffix.lower() in FORMATS:
            found.append(p)
    return found, skipped


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large but openable: read it
            return Image.open(path)
    except Image.DecompressionBombError as e:
        raise Unreadable(f"{path}: a decompression bomb to Pillow ({e}); resize it, or raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise Unreadable(f"{path}: not a readable image ({type(e).__name__})") from None


def header(path: Path) -> tuple[int, int, str, bool]:
    """(height, width, Pillow mode, has an EXIF orientation other than 1) of a file, as shown
    (height and width swapped for a transposing orientation), from its header alone."""
    with _open(path) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
        except Exception:  # noqa: BLE001 - a damaged EXIF block: the image as stored
            orientation = 1
        if orientation in TRANSPOSED:
            h, w = w, h
        return h, w, im.mode, orientation not in (1, None)


def pixels(path: Path, channels: int) -> np.ndarray:
    """The image as a viewer shows it: uint8 [h, w, channels] (channels 1 or 3). Raises Unreadable."""
    from PIL import ImageOps

    try:
        with _open(path) as im:
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            im = im.convert("L" if channels == 1 else "RGB")
            x = np.asarray(im, dtype=np.uint8)
    except Unreadable:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or damaged pixel data
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        raise Unreadable(f"{path}: unreadable or truncated image ({reason})") from None
    return x[..., None] if x.ndim == 2 else x
