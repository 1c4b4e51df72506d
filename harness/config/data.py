"""The `dataset` section (where the images come from) and the `transfer` section (the students' part
of the transfer set, unlabeled images), with their checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "fashion_mnist"
    data_dir: str | None = None  # None: TFDS's default (~/tensorflow_datasets)
    validation_fraction: float = 0.1
    limit: int | None = None  # keep only the first N examples of each split
    # Your own images instead of a TFDS `name` (see data/folder.py, data/arrays.py); paths are relative to
    # the study file's folder. Exactly one of name, folder and arrays.
    folder: str | None = None  # one subfolder per class (or train/ and test/ each with one per class)
    arrays: str | None = None  # an .npz with x_train, y_train (and x_test, y_test)
    image_size: list[int] | None = None  # [height, width]: resize every image (needed when sizes vary)
    color_mode: str | None = None  # grayscale | rgb; null: as the data are (a folder: grayscale if all are)
    test_fraction: float = 0.1  # a seeded, stratified test slice of train where the data have no test split
    max_memory_mb: int = 4096  # the in-memory uint8 arrays may not need more than this

    @property
    def kind(self) -> str:
        """Where the images come from: tfds, folder or arrays."""
        return "folder" if self.folder is not None else "arrays" if self.arrays is not None else "tfds"


@dataclass(frozen=True)
class TransferConfig:
    """The student's transfer set (and its scratch twin's), a part of the teacher's: the teacher is
    always trained on the whole training split, and validation and test never change."""
    fraction: float = 1.0  # a seeded, class-stratified subset of the transfer set
    omit_classes: list[int] | None = None  # class ids removed from the student's transfer set
    labels: bool = True  # false: soft targets only (alpha fixed at 0; search.alpha must be null)
    # Images the distilled student learns from through the teacher's soft targets alone (the hard
    # term masked for them; docs/own-student.md): an .npz (`x` or `x_train`) or a folder of images
    # without class subfolders, relative to the study file. Scratch twins never see them.
    unlabeled: str | None = None
    # true: the transfer-split examples that `fraction` leaves out (of the classes not omitted) join
    # the distilled student's transfer set without their labels.
    unlabeled_rest: bool = False

    @property
    def default(self) -> bool:
        return self == TransferConfig()

    @property
    def has_unlabeled(self) -> bool:
        return self.unlabeled is not None or self.unlabeled_rest

    def labeled_dict(self) -> dict:
        """The section without its unlabeled fields when they are unset: a study without unlabeled
        images keeps the fingerprint and cache keys of a study that never had the fields."""
        d = dataclasses.asdict(self)
        for name in ("unlabeled", "unlabeled_rest"):
            if not d[name]:
                d.pop(name)
        return d

    def to_params(self) -> dict:
        """The MLflow params every student run logs."""
        extra = {"transfer_unlabeled": self.unlabeled or "", "transfer_unlabeled_rest": self.unlabeled_rest} \
            if self.has_unlabeled else {}
        return {"transfer_fraction": self.fraction, "omit_classes": ",".join(map(str, self.omit_classes or [])),
                "transfer_labels": self.labels, **extra}


def check_dataset(d: DatasetConfig, fail) -> None:
    """The dataset section's own rules (what the data hold is checked when they are read)."""
    if not 0.0 < d.validation_fraction < 1.0:
        fail("dataset.validation_fraction", "must be between 0 and 1 (exclusive)")
    if d.limit is not None and d.limit < 10:
        fail("dataset.limit", "must be at least 10 (or null for the whole split)")
    given = [k for k in ("folder", "arrays") if getattr(d, k) is not None]
    if len(given) > 1:
        fail("dataset.arrays", "give exactly one of dataset.name, dataset.folder and dataset.arrays")
    if given and d.data_dir is not None:
        fail("dataset.data_dir", f"is for TFDS names only (this dataset is dataset.{given[0]})")
    if d.image_size is not None and (len(d.image_size) != 2 or min(d.image_size) < 1):
        fail("dataset.image_size", f"expected [height, width], each at least 1 (got {d.image_size})")
    if d.color_mode not in (None, "grayscale", "rgb"):
        fail("dataset.color_mode", f"unknown color mode {d.color_mode!r}; allowed: grayscale, rgb (or null)")
    if not 0.0 < d.test_fraction < 1.0:
        fail("dataset.test_fraction", "must be between 0 and 1 (exclusive)")
    if d.max_memory_mb < 1:
        fail("dataset.max_memory_mb", "must be at least 1")


def check_transfer(t: TransferConfig, where: str, fail, num_classes: int | None = None) -> None:
    """A transfer section's own rules (the dataset's class count is checked once the data are read)."""
    if not 0.0 < t.fraction <= 1.0:
        fail(f"{where}.fraction", f"must be in (0, 1] (got {t.fraction:g})")
    if t.unlabeled_rest and t.fraction >= 1.0:
        fail(f"{where}.unlabeled_rest", "needs fraction < 1: the rest is what fraction leaves out")
    if t.unlabeled is not None and not t.unlabeled.strip():
        fail(f"{where}.unlabeled", "must name an .npz file or a folder of images (or be null)")
    omitted = t.omit_classes or []
    if any(k < 0 for k in omitted) or len(set(omitted)) != len(omitted):
        fail(f"{where}.omit_classes", "class ids must be distinct and 0 or more")
    if num_classes is not None:
        if any(k >= num_classes for k in omitted):
            fail(f"{where}.omit_classes", f"the dataset's classes are 0 to {num_classes - 1}")
        if len(set(omitted)) >= num_classes:
            fail(f"{where}.omit_classes", f"omits every one of the dataset's {num_classes} classes: "
                                          "the student would have nothing to learn from")
