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
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from harness import files
from harness.data import views
from harness.data.evaluate import ensemble_logits

log = logging.getLogger(__name__)
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
    entry = Path(cache_dir) / f"views-{key}"
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with files.locked(Path(cache_dir) / f"views-{key}.lock"):
        if entry.exists():
            try:
                manifest = json.loads((entry / "manifest.json").read_text())
                if manifest["key"] != key or files.sha256(entry / "logits.npy") != manifest["sha256"]:
                    raise ValueError("checksum mismatch")
                out = np.load(entry / "logits.npy", allow_pickle=False)
                if out.shape[:2] != (spec.count, len(pool)):
                    raise ValueError(f"shape {out.shape}, expected ({spec.count}, {len(pool)}, ...)")
                log.info("teacher logits of %d views x %d images: from cache %s", spec.count, len(pool), entry)
                return out
            except Exception as e:  # noqa: BLE001 - any damage means: compute again
                log.warning("views logits cache %s is damaged (%s); computing them again", entry, e)
                shutil.rmtree(entry, ignore_errors=True)
        t0 = time.perf_counter()
        out = compute(teacher.members, pool, spec, seed)
        if not np.all(np.isfinite(out)):
            raise ValueError("the teacher's logits over the views are not finite; nothing cached")
        with files.replacing(entry) as tmp:
            tmp.mkdir(parents=True)
            np.save(tmp / "logits.npy", out, allow_pickle=False)
            (tmp / "manifest.json").write_text(json.dumps({
                "key": key, "teacher": teacher.key, "views": dataclasses.asdict(spec), "seed": seed,
                "shape": list(out.shape), "sha256": files.sha256(tmp / "logits.npy")}))
        log.info("teacher logits of %d views x %d images: computed in %.1f s, cached at %s", spec.count,
                 len(pool), time.perf_counter() - t0, entry)
        return out
