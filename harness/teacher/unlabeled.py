"""The teacher's logits over unlabeled transfer images, computed once and cached.

Like the transfer set's (`trained.py`), they are a teacher forward pass paid
once: kept under the teacher cache as `unlabeled-KEY/`, KEY a hash of the
images' digest (`data.unlabeled.digest`: their bytes, not their path) and the
teacher's cache key, with the SHA-256 of the logits file in a manifest that is
checked before use; a damaged entry is computed again. A non-finite result is
never cached.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from harness import files
from harness.data.evaluate import ensemble_logits

log = logging.getLogger(__name__)


def cache_key(images_digest: str, teacher_key: str) -> str:
    return files.digest(json.dumps({"unlabeled": images_digest, "teacher": teacher_key}, sort_keys=True))


def logits(teacher, images: np.ndarray, images_digest: str, cache_dir: str | Path) -> np.ndarray:
    """float32 `[n, classes]` (or `[n, members, classes]`) of `teacher` (a `trained.Teacher`)
    over `images` (uint8 `[n, h, w, c]`): from the cache, or computed now and cached."""
    key = cache_key(images_digest, teacher.key)
    entry = Path(cache_dir) / f"unlabeled-{key}"
    with files.locked(Path(cache_dir) / f"unlabeled-{key}.lock"):
        if entry.exists():
            try:
                manifest = json.loads((entry / "manifest.json").read_text())
                if manifest["key"] != key or files.sha256(entry / "logits.npy") != manifest["sha256"]:
                    raise ValueError("checksum mismatch")
                out = np.load(entry / "logits.npy", allow_pickle=False)
                log.info("teacher logits of %d unlabeled images: from cache %s", len(out), entry)
                return out
            except Exception as e:  # noqa: BLE001 - any damage means: compute again
                log.warning("unlabeled logits cache %s is damaged (%s); computing them again", entry, e)
                shutil.rmtree(entry, ignore_errors=True)
        out = ensemble_logits(teacher.members, images).astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ValueError("the teacher's logits over the unlabeled images are not finite")
        with files.replacing(entry) as tmp:
            tmp.mkdir(parents=True)
            np.save(tmp / "logits.npy", out, allow_pickle=False)
            (tmp / "manifest.json").write_text(json.dumps({"key": key, "images": images_digest,
                                                           "teacher": teacher.key,
                                                           "sha256": files.sha256(tmp / "logits.npy")}))
        log.info("teacher logits of %d unlabeled images: computed, cached at %s", len(out), entry)
        return out
