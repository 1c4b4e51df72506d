"""Where the images come from: a TFDS name, a folder of class subfolders or an .npz of arrays, as
in-memory transfer, validation and test splits, with the data's content digest.

The transfer set is the train split minus a seeded validation slice; the test split is only read
for final reports (a seeded, stratified slice of train where the data have none). Arrays stay in
memory as uint8 [n, h, w, c] (Fashion-MNIST is 47 MB), so a study builds them once and every trial
reuses them. `Splits.digest` says what the data are, not what they are called: every cache key
that depends on the data holds it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness.config import DatasetConfig
from harness.data import splitting
from harness.data.splitting import Split  # the public name (sources.Split)

log = logging.getLogger(__name__)

# The readers of a user's own files, by the `dataset` field that names them: each module's
# `read(cfg, source)` gives (train (images, labels), test or None, class names). A new kind of
# source is a module here and a field in `config/data.py` (docs/design.md).
READERS = {"folder": "harness.data.folder", "arrays": "harness.data.arrays"}


@dataclass
class Splits:
    transfer: Split
    validation: Split
    test: Split
    num_classes: int
    image_shape: tuple[int, int, int]
    dataset: str  # the TFDS name, or the folder's / file's name
    class_names: list[str] = field(default_factory=list)  # class id -> name ("0", "1", ... when unnamed)
    kind: str = "tfds"  # tfds | folder | arrays
    location: str = ""  # the folder or .npz file (absolute); "" for a TFDS name
    test_source: str = "test"  # or "train (stratified 10%)": the data had no test split

    @cached_property
    def digest(self) -> str:
        """SHA-256 (hex) of every split's images, labels and indices, their shapes and the class
        count: what the data are. Raises nothing; costs one pass over the arrays (0.2 s for
        Fashion-MNIST), once per process."""
        what = {role: [getattr(self, role).digest, list(getattr(self, role).images.shape)]
                for role in ("transfer", "validation", "test")}
        what["num_classes"] = self.num_classes
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def to_params(self) -> dict:
        """What the parent run logs about the data (the class names in full go to classes.json)."""
        names = ",".join(self.class_names)
        return {"dataset_kind": self.kind, "dataset_source": self.location or self.dataset,
                "num_classes": self.num_classes, "image_shape": "x".join(map(str, self.image_shape)),
                "test_split": self.test_source, "data_digest": self.digest[:16],
                "class_names": names if len(names) <= 500 else names[:497] + "..."}


def load_splits(cfg: DatasetConfig, seed: int, source: str = "<dataset>") -> Splits:
    """Transfer, validation and test splits of the study's dataset (`dataset.name`, `.folder` or
    `.arrays`), each uint8 images [n, h, w, c] with int64 labels.

    The validation slice is a seeded permutation of the train split, so the same (data, fraction,
    seed) always gives the same disjoint splits. With `limit`, each split keeps its first `limit`
    examples (for a TFDS name, only the part of train that holds them is read and decoded).
    Raises ConfigError (one line naming the field and `source`, the study file) for data that
    cannot be had or read: see `tfds_data`, `folder` and `arrays`.
    """
    if cfg.kind == "tfds":
        from harness.data import tfds_data

        r = tfds_data.read(cfg, seed, source)
        splits = Splits(r.transfer, r.validation, r.test, r.num_classes, r.image_shape, cfg.name,
                        class_names=r.class_names, test_source=r.test_source)
    else:
        reader = importlib.import_module(READERS[cfg.kind])
        train, test, names = reader.read(cfg, source)
        transfer, val, test_split, test_source = splitting.assemble(train, test, cfg, seed)
        if test is None:
            log.warning("%s has no test split: the test split is a seeded, stratified %.0f%% of its images "
                        "(dataset.test_fraction)", cfg.folder or cfg.arrays, 100 * cfg.test_fraction)
        where = Path(cfg.folder or cfg.arrays)
        splits = Splits(transfer, val, test_split, len(names), tuple(int(d) for d in train[0].shape[1:]),
                        where.stem, class_names=names, kind=cfg.kind, location=str(where.resolve()),
                        test_source=test_source)
    splitting.check_classes({"transfer": splits.transfer, "validation": splits.validation, "test": splits.test},
                            splits.num_classes, splits.class_names,
                            f"data{f' (dataset.limit {cfg.limit})' if cfg.limit is not None else ''}")
    log.info("data %s: %d transfer, %d validation, %d test examples of %s, %d classes; test from %s; digest %s",
             splits.dataset, len(splits.transfer), len(splits.validation), len(splits.test),
             "x".join(map(str, splits.image_shape)), splits.num_classes, splits.test_source, splits.digest[:16])
    return splits


def log_to_run(splits: Splits) -> None:
    """The data on the active MLflow run: params (`Splits.to_params`), a `data.test_split` tag, and
    `classes.json` (class id -> name) as an artifact."""
    import mlflow

    mlflow.log_params(splits.to_params())
    mlflow.set_tag("data.test_split", splits.test_source)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "classes.json"
        p.write_text(json.dumps(dict(enumerate(splits.class_names)), indent=1))
        mlflow.log_artifact(str(p))
