"""Fashion-MNIST offline: TFDS's real `fashion_mnist` built from Debian's `dataset-fashion-mnist`."""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import struct
from pathlib import Path

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from harness.config import UserError

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
