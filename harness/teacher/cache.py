"""What every teacher is (trained here or loaded), its cache entry, and the checks it passes
before any student learns from it.

An entry is a folder named by the teacher's cache key: its transfer-set logits, the members
when the harness trained them (a loaded teacher is read from its own files each time), and a
manifest with every file's SHA-256, so a truncated or corrupted entry is rebuilt, never used.
A teacher whose logits are not finite, or whose validation accuracy is near chance, is never
cached: `check_usable` stops the study first.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from harness import files
from harness.config import ConfigError, StudyConfig
from harness.distill.models import flops_per_example, param_count

log = logging.getLogger(__name__)

# Near chance: a validation accuracy at most this share of the way from chance (the most frequent
# class's share of the validation split) to 1. With 10 balanced classes: 0.19 or less.
NEAR_CHANCE = 0.1


@dataclass
class Teacher:
    members: list[keras.Model]  # each returns logits [batch, classes] of float32 images 0-255
    transfer_logits: np.ndarray  # [n, classes], or [n, members, classes] for an ensemble
    val_accuracy: float
    test_accuracy: float
    key: str
    path: Path
    from_cache: bool
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch, member 0
    train_seconds: float = 0.0
    trained: bool = True  # False: loaded from `teacher.model` (nothing of it was trained here)
    outputs: list[str] = field(default_factory=list)  # loaded: logits | probabilities, per member
    warnings: list[str] = field(default_factory=list)  # one line each, repeated in the end-of-study summary

    @property
    def params(self) -> int:
        return sum(param_count(m) for m in self.members)

    @property
    def flops(self) -> int:
        return sum(flops_per_example(m) for m in self.members)


def chance_threshold(labels: np.ndarray) -> float:
    """The validation accuracy at or below which a teacher is near chance (see NEAR_CHANCE)."""
    chance = float(np.bincount(labels).max() / len(labels))
    return chance + NEAR_CHANCE * (1.0 - chance)


def check_usable(cfg: StudyConfig, field_name: str, what: str, logits: np.ndarray, val_accuracy: float,
                 val_labels: np.ndarray, num_classes: int, hint: str) -> None:
    """Refuse a teacher (ConfigError: one line, exit 2) whose transfer-set logits are not all finite
    or whose validation accuracy is near chance; called before anything is cached."""
    bad = int(np.size(logits) - np.isfinite(logits).sum())
    if bad:
        raise ConfigError(cfg.source, field_name, f"{what} gives {bad:,} non-finite logits over the transfer "
                                                  f"set; nothing cached ({hint})")
    limit = chance_threshold(val_labels)
    if not math.isfinite(val_accuracy) or val_accuracy <= limit:
        raise ConfigError(cfg.source, field_name, f"{what} scores {val_accuracy:.4f} on validation, near chance "
                                                  f"({limit:.4f} or less with {num_classes} classes); nothing "
                                                  f"cached ({hint})")


def read(entry: Path, key: str) -> tuple[dict, list[keras.Model], np.ndarray]:
    """The manifest, the saved members and the transfer logits of an entry; ValueError when damaged."""
    manifest = json.loads((entry / "manifest.json").read_text())
    if manifest.get("key") != key:
        raise ValueError("manifest key mismatch")
    for name, digest in manifest["sha256"].items():
        if files.sha256(entry / name) != digest:
            raise ValueError(f"{name}: checksum mismatch")
    members = [keras.models.load_model(entry / f"member_{i}.keras", safe_mode=True, compile=False)
               for i in range(manifest.get("saved_members", manifest["members"]))]
    logits = np.load(entry / "transfer_logits.npy", allow_pickle=False)
    return manifest, members, logits


def write(entry: Path, key: str, models: list[keras.Model], logits: np.ndarray, **fields) -> None:
    """Write an entry atomically: `models` (the members) saved as .keras (none for a loaded teacher),
    the logits, and a manifest holding `fields` and every file's SHA-256."""
    with files.replacing(entry) as tmp:
        tmp.mkdir(parents=True)
        for i, m in enumerate(models):
            m.save(tmp / f"member_{i}.keras")
        np.save(tmp / "transfer_logits.npy", logits, allow_pickle=False)
        names = sorted(p.name for p in tmp.iterdir())
        manifest = {"key": key, **fields, "sha256": {name: files.sha256(tmp / name) for name in names}}
        if len(models) != fields.get("members", len(models)):
            manifest["saved_members"] = len(models)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))


def logits_entry(cache_dir: str | Path, name: str, key: str, what: str, compute, expect=None,
                 **fields) -> np.ndarray:
    """Teacher logits computed once and kept as `cache_dir/name-KEY/` (`logits.npy` and a manifest with
    `fields` and its SHA-256), under a lock so several workers compute them once. A damaged entry
    (checksum, or `expect(logits)` raising ValueError) is computed again; `compute()`'s result is
    cached only when finite, else ValueError naming `what` (nothing written)."""
    entry = Path(cache_dir) / f"{name}-{key}"
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with files.locked(Path(cache_dir) / f"{name}-{key}.lock"):
        if entry.exists():
            try:
                manifest = json.loads((entry / "manifest.json").read_text())
                if manifest["key"] != key or files.sha256(entry / "logits.npy") != manifest["sha256"]:
                    raise ValueError("checksum mismatch")
                out = np.load(entry / "logits.npy", allow_pickle=False)
                if expect is not None:
                    expect(out)
                log.info("teacher logits of %s: from cache %s", what, entry)
                return out
            except Exception as e:  # noqa: BLE001 - any damage means: compute again
                log.warning("%s logits cache %s is damaged (%s); computing them again", name, entry, e)
                shutil.rmtree(entry, ignore_errors=True)
        t0 = time.perf_counter()
        out = compute()
        if not np.all(np.isfinite(out)):
            raise ValueError(f"the teacher's logits over {what} are not finite; nothing cached")
        with files.replacing(entry) as tmp:
            tmp.mkdir(parents=True)
            np.save(tmp / "logits.npy", out, allow_pickle=False)
            (tmp / "manifest.json").write_text(json.dumps({"key": key, **fields, "shape": list(out.shape),
                                                           "sha256": files.sha256(tmp / "logits.npy")}))
        log.info("teacher logits of %s: computed in %.1f s, cached at %s", what, time.perf_counter() - t0, entry)
        return out
