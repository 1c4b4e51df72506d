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
from pathlib import Path

import numpy as np

from harness import files
from harness.data.evaluate import ensemble_logits
from harness.teacher import cache


def cache_key(images_digest: str, teacher_key: str) -> str:
    return files.digest(json.dumps({"unlabeled": images_digest, "teacher": teacher_key}, sort_keys=True))


def logits(teacher, images: np.ndarray, images_digest: str, cache_dir: str | Path) -> np.ndarray:
    """float32 `[n, classes]` (or `[n, members, classes]`) of `teacher` (a `trained.Teacher`)
    over `images` (uint8 `[n, h, w, c]`): from the cache, or computed now and cached."""
    return cache.logits_entry(cache_dir, "unlabeled", cache_key(images_digest, teacher.key),
                              f"{len(images)} unlabeled images",
                              lambda: ensemble_logits(teacher.members, images).astype(np.float32),
                              images=images_digest, teacher=teacher.key)
