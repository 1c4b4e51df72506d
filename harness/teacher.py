"""Train the teacher (or an ensemble) once; cache its weights and transfer-set logits.

The cache entry is keyed by a hash of everything that determines it (dataset,
split, teacher config, seed, library versions) and checked before use: every
file's SHA-256 is in its manifest, so a truncated or corrupted entry is
rebuilt, never used. Entries are written into a temporary folder and renamed
into place, and a file lock keeps parallel workers from training twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import data as data_mod
from .config import StudyConfig
from .distiller import compile_plain
from .models import build_teacher, flops_per_example, param_count

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
# Forward passes of a teacher over a whole transfer set in this process (the
# bench checks a study makes one, not one per trial).
transfer_passes = 0


@dataclass
class Teacher:
    members: list[keras.Model]
    transfer_logits: np.ndarray  # [n, classes], or [n, members, classes] for an ensemble
    val_accuracy: float
    test_accuracy: float
    key: str
    path: Path
    from_cache: bool
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch, member 0
    train_seconds: float = 0.0

    @property
    def params(self) -> int:
        return sum(param_count(m) for m in self.members)

    @property
    def flops(self) -> int:
        return sum(flops_per_example(m) for m in self.members)


def cache_key(cfg: StudyConfig) -> str:
    import tensorflow_datasets as tfds

    blob = json.dumps({
        "format": CACHE_FORMAT,
        "dataset": {k: v for k, v in dataclasses.asdict(cfg.dataset).items() if k != "data_dir"},
        "teacher": dataclasses.asdict(cfg.teacher),
        "seed": cfg.seed,
        "versions": [tf.__version__, keras.__version__, tfds.__version__],
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def resolve_jit(cfg_jit: bool | None, family: str, dropout: float = 0.0, input_dropout: float = 0.0) -> bool:
    """XLA, except on a CPU for dropout or convolutions, where `harness bench`
    measured it 2-3x slower: XLA's CPU random-number generation (dropout) and
    its CPU convolutions lose to TensorFlow's own kernels (oneDNN)."""
    if cfg_jit is not None:
        return cfg_jit
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    return on_gpu or not (dropout or input_dropout or family == "cnn")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _EpochLog(keras.callbacks.Callback):
    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs, self.t0 = label, epochs, time.perf_counter()
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(logs)
        log.info("%s epoch %d/%d  loss %.4f  acc %.4f  val_acc %.4f  (%.0f s)", self.label, epoch + 1,
                 self.epochs, logs.get("loss", float("nan")), logs.get("accuracy", float("nan")),
                 logs.get("val_accuracy", float("nan")), time.perf_counter() - self.t0)


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    ds = data_mod.pipeline(images, np.zeros(len(images), np.int64), batch_size)
    return np.concatenate([model(x, training=False).numpy() for x, _ in ds], axis=0)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def ensemble_logits(members: list[keras.Model], images: np.ndarray) -> np.ndarray:
    """[n, classes] for one member, [n, members, classes] for an ensemble."""
    outs = [predict_logits(m, images) for m in members]
    return outs[0] if len(outs) == 1 else np.stack(outs, axis=1)


def ensemble_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    if logits.ndim == 3:  # the ensemble predicts with the mean of its members' distributions
        z = logits - logits.max(axis=-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        return accuracy(p.mean(axis=1), labels)
    return accuracy(logits, labels)


def _train_member(cfg: StudyConfig, splits: data_mod.Splits, member: int) -> tuple[keras.Model, list]:
    t = cfg.teacher
    seed = cfg.seed + 1000 * member
    keras.utils.set_random_seed(seed)
    model = build_teacher(t, splits.image_shape, splits.num_classes, seed=seed, name=f"teacher_{member}")
    jit = resolve_jit(t.jit_compile, t.family, t.dropout, t.input_dropout)
    compile_plain(model, t.optimizer, t.learning_rate, jit_compile=jit)
    train = data_mod.pipeline(splits.transfer.images, splits.transfer.labels, t.batch_size,
                              shuffle_seed=seed, max_shift=t.jitter)
    val = data_mod.pipeline(splits.validation.images, splits.validation.labels, 1024)
    cb = _EpochLog(f"teacher[{member}]", t.epochs)
    log.info("training teacher member %d: %s %s, %d epochs, XLA %s", member, t.family, t.widths,
             t.epochs, "on" if jit else "off")
    model.fit(train, validation_data=val, epochs=t.epochs, verbose=0, callbacks=[cb], shuffle=False)
    return model, cb.history


def _load(entry: Path, key: str) -> Teacher:
    manifest = json.loads((entry / "manifest.json").read_text())
    if manifest.get("key") != key:
        raise ValueError("manifest key mismatch")
    for name, digest in manifest["sha256"].items():
        if _sha256(entry / name) != digest:
            raise ValueError(f"{name}: checksum mismatch")
    members = [keras.models.load_model(entry / f"member_{i}.keras", safe_mode=True, compile=False)
               for i in range(manifest["members"])]
    logits = np.load(entry / "transfer_logits.npy", allow_pickle=False)
    return Teacher(members, logits, manifest["val_accuracy"], manifest["test_accuracy"], key, entry,
                   from_cache=True, history=manifest["history"],
                   train_seconds=manifest["train_seconds"])


def _write(entry: Path, key: str, members, logits, val_acc, test_acc, history, seconds) -> None:
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, m in enumerate(members):
        m.save(tmp / f"member_{i}.keras")
    np.save(tmp / "transfer_logits.npy", logits, allow_pickle=False)
    files = sorted(p.name for p in tmp.iterdir())
    manifest = {"key": key, "members": len(members), "val_accuracy": val_acc,
                "test_accuracy": test_acc, "history": history, "train_seconds": seconds,
                "sha256": {name: _sha256(tmp / name) for name in files}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(tmp, entry)


def load_or_train(cfg: StudyConfig, splits: data_mod.Splits, cache_dir: str | Path) -> Teacher:
    """The study's teacher: from the cache when a valid entry exists, else trained now."""
    key = cache_key(cfg)
    entry = Path(cache_dir) / key
    with _locked(Path(cache_dir) / f"{key}.lock"):
        if entry.exists():
            try:
                teacher = _load(entry, key)
                log.info("teacher: loaded from cache %s (val acc %.4f)", entry, teacher.val_accuracy)
                return teacher
            except Exception as e:  # noqa: BLE001 - any damage means: rebuild
                log.warning("teacher cache %s is damaged (%s); rebuilding it", entry, e)
                shutil.rmtree(entry, ignore_errors=True)
        t0 = time.perf_counter()
        members, histories = zip(*(_train_member(cfg, splits, i) for i in range(cfg.teacher.members)))
        seconds = time.perf_counter() - t0
        members = list(members)
        logits = ensemble_logits(members, splits.transfer.images)
        global transfer_passes
        transfer_passes += 1
        val_acc = ensemble_accuracy(ensemble_logits(members, splits.validation.images),
                                    splits.validation.labels)
        test_acc = ensemble_accuracy(ensemble_logits(members, splits.test.images), splits.test.labels)
        _write(entry, key, members, logits, val_acc, test_acc, histories[0], seconds)
        log.info("teacher: trained in %.0f s, val acc %.4f, test acc %.4f; cached at %s",
                 seconds, val_acc, test_acc, entry)
        return Teacher(members, logits, val_acc, test_acc, key, entry, from_cache=False,
                       history=list(histories[0]), train_seconds=seconds)
