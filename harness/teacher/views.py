"""The teacher's logits over every view of every transfer image (`distillation.teacher: views`),
computed once, in one batched pass, and cached.

As FKD (Shen & Xing 2022) stores its soft labels: kept under the teacher cache as `views-KEY/`,
KEY a hash of the teacher's cache key (which holds the data's digest and the study's seed), the
views' spec (`distillation.views`, whose `count` is V) and the seed the views are drawn from; a
manifest holds the SHA-256 of the logits file, checked before use (a damaged entry is computed
again). float32 `[V, N, classes]` (`[V, N, members, classes]` for an ensemble), N the transfer
split's size. A non-finite result is never cached.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from harness import files
from harness.data import views
from harness.data.evaluate import ensemble_logits
from harness.teacher import cache

FORMAT = 1


def cache_key(teacher_key: str, spec, seed: int) -> str:
    """The entry's key: the teacher's key, the views' spec (`ViewsConfig`) and the seed."""
    return files.digest(json.dumps({"format": FORMAT, "teacher": teacher_key, "views": dataclasses.asdict(spec),
                                    "seed": seed}, sort_keys=True))


def compute(members, pool: np.ndarray, spec, seed: int, batch: int = 256) -> np.ndarray:
    """float32 `[V, N, ...]`: the teacher `members`' logits on every view of every image of `pool`
    (uint8 `[N, h, w, c]`): one pass over the images, each batch's V views predicted together."""
    n, count = len(pool), spec.count
    with tf.device("/CPU:0"):
        pool_t = tf.constant(pool)
    out = None
    for start in range(0, n, batch):
        index = np.arange(start, min(start + batch, n), dtype=np.int64)
        with tf.device("/CPU:0"):  # where tf.data builds them for training: the same float ops, bit for bit
            x = views.view(pool_t, np.tile(index, count), np.repeat(np.arange(count, dtype=np.int32), len(index)),
                           spec, seed).numpy()
        got = ensemble_logits(members, x).astype(np.float32)
        got = got.reshape(count, len(index), *got.shape[1:])
        if out is None:
            out = np.empty((count, n, *got.shape[2:]), np.float32)
        out[:, index] = got
    return out


def logits(teacher, pool: np.ndarray, spec, seed: int, cache_dir: str | Path) -> np.ndarray:
    """float32 `[V, N, classes]` (or `[V, N, members, classes]`) of `teacher` (a `trained.Teacher`)
    over the views `spec` of `pool` (the transfer split's images, uint8 `[N, h, w, c]`): from the
    cache, or computed now and cached. ValueError when they are not all finite (nothing cached)."""
    key = cache_key(teacher.key, spec, seed)

    def expect(out):
        if out.shape[:2] != (spec.count, len(pool)):
            raise ValueError(f"shape {out.shape}, expected ({spec.count}, {len(pool)}, ...)")

    return cache.logits_entry(cache_dir, "views", key, f"{spec.count} views x {len(pool)} images",
                              lambda: compute(teacher.members, pool, spec, seed), expect,
                              teacher=teacher.key, views=dataclasses.asdict(spec), seed=seed)
