"""Train the teacher (or an ensemble) once; cache its weights and transfer-set logits.

The cache entry is keyed by a hash of everything that determines it (the data's
content digest, teacher config, seed, library versions) and checked before use: every
file's SHA-256 is in its manifest, so a truncated or corrupted entry is
rebuilt, never used. Entries are written into a temporary folder and renamed
into place, and a file lock keeps parallel workers from training twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from harness import files, registry, tracking
from harness.config import ConfigError, StudyConfig
from harness.data import pipelines, sources
from harness.data.evaluate import ensemble_accuracy, ensemble_logits
from harness.distill import precision
from harness.distill.distiller import compile_plain
from harness.distill.guard import Diverged, DivergenceGuard
from harness.distill.models import build_teacher, check_fits
from harness.distill.recipe import Recipe
from harness.teacher import cache, loaded
from harness.teacher.cache import Teacher  # where the rest of the harness finds it

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
LOADED_FIELDS = ("model", "input", "outputs", "endpoint")  # config.TeacherConfig's fields of a loaded teacher
# Forward passes of a teacher over a whole transfer set in this process (the
# bench checks a study makes one, not one per trial).
transfer_passes = 0


def cache_key(cfg: StudyConfig, data: str) -> str:
    """The teacher cache entry's key: a hash of the data's digest (`Splits.digest`: what the images,
    labels and splits are, not what they are called or where they lie), the teacher section, the
    seed, the library versions and the precision. A trained teacher's section is its training fields
    (a loaded teacher's fields left out); a loaded one's is what its files are (loaded.py)."""
    teacher = {k: v for k, v in dataclasses.asdict(cfg.teacher).items() if k not in LOADED_FIELDS}
    if cfg.teacher.model is not None:
        teacher = loaded.key_part(cfg)
    blob = json.dumps({
        "format": CACHE_FORMAT,
        "data": data,
        "teacher": teacher,
        "seed": cfg.seed,
        "versions": [tf.__version__, keras.__version__, tfds.__version__],
        **precision.key_part(precision.resolved(cfg)),
    }, sort_keys=True)
    return files.digest(blob)


def resolve_jit(cfg_jit: bool | None, family: str, dropout: float = 0.0, input_dropout: float = 0.0) -> bool:
    """XLA, except on a CPU for dropout or convolutions, where `harness bench`
    measured it 2-3x slower: XLA's CPU random-number generation (dropout) and
    its CPU convolutions lose to TensorFlow's own kernels (oneDNN)."""
    if cfg_jit is not None:
        return cfg_jit
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    return on_gpu or not (dropout or input_dropout or family == "cnn")


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


def _train_member(cfg: StudyConfig, splits: sources.Splits, member: int) -> tuple[keras.Model, list]:
    t = cfg.teacher
    seed = cfg.seed + 1000 * member
    keras.utils.set_random_seed(seed)
    model = build_teacher(t, splits.image_shape, splits.num_classes, seed=seed, name=f"teacher_{member}",
                          dtype=precision.policy(precision.resolved(cfg)))
    jit = resolve_jit(t.jit_compile, t.family, t.dropout, t.input_dropout)
    compile_plain(model, Recipe.of(t).optimizer_for(len(splits.transfer)), jit_compile=jit)
    train = pipelines.pipeline(splits.transfer.images, splits.transfer.labels, t.batch_size,
                              shuffle_seed=seed, max_shift=t.jitter)
    val = pipelines.pipeline(splits.validation.images, splits.validation.labels, 1024)
    cb = _EpochLog(f"teacher[{member}]", t.epochs)
    log.info("training teacher member %d: %s %s, %d epochs (%s, lr %g), XLA %s", member, t.family, t.widths,
             t.epochs, t.schedule, t.learning_rate, "on" if jit else "off")
    try:  # one line, exit 2, nothing cached
        model.fit(train, validation_data=val, epochs=t.epochs, verbose=0, shuffle=False,
                  callbacks=[DivergenceGuard(setting=None), cb])
    except Diverged as e:
        raise ConfigError(cfg.source, "teacher", f"the teacher (member {member}) diverged: its {e}; nothing cached "
                                                 "(lower teacher.learning_rate?)") from None
    return model, cb.history


def load_or_train(cfg: StudyConfig, splits: sources.Splits, cache_dir: str | Path,
                  tracking_uri: str | None = None) -> Teacher:
    """The study's teacher: loaded from `teacher.model` when given (loaded.py; a registry URI is read
    from `tracking_uri`, the study's store), else from the cache when a valid entry exists, else
    trained now. A teacher whose logits are not finite or that scores near chance on validation is
    never cached: ConfigError (one line, exit 2)."""
    if cfg.teacher.model is not None:
        loaded.use_store(cfg, tracking_uri)
        return loaded.load(cfg, splits, cache_dir, cache_key(cfg, splits.digest))
    check_fits(cfg, splits.image_shape)
    key = cache_key(cfg, splits.digest)
    entry = Path(cache_dir) / key
    with files.locked(Path(cache_dir) / f"{key}.lock"):
        if entry.exists():
            try:
                manifest, members, logits = cache.read(entry, key)
                teacher = Teacher(members, logits, manifest["val_accuracy"], manifest["test_accuracy"], key, entry,
                                  from_cache=True, history=manifest["history"],
                                  train_seconds=manifest["train_seconds"])
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
        cache.check_usable(cfg, "teacher", f"the trained teacher ({cfg.teacher.family} {cfg.teacher.widths}, "
                           f"{cfg.teacher.epochs} epochs)", logits, val_acc, splits.validation.labels,
                           splits.num_classes, "check teacher.learning_rate, epochs and widths")
        cache.write(entry, key, members, logits, members=len(members), val_accuracy=val_acc, test_accuracy=test_acc,
                    history=histories[0], train_seconds=seconds)
        log.info("teacher: trained in %.0f s, val acc %.4f, test acc %.4f; cached at %s",
                 seconds, val_acc, test_acc, entry)
        return Teacher(members, logits, val_acc, test_acc, key, entry, from_cache=False,
                       history=list(histories[0]), train_seconds=seconds)


def layered(cfg: StudyConfig, image_shape, num_classes: int) -> list:
    """The teacher's members as models whose layers can be named, untrained (the architecture
    `teacher` builds) or as a loaded teacher's files hold them (`loaded.layered`); nothing is written."""
    if cfg.teacher.model is not None:
        return loaded.layered(cfg)
    return [build_teacher(cfg.teacher, image_shape, num_classes) for _ in range(cfg.teacher.members)]


def registered_name(study_name: str) -> str:
    """The MLflow registered model of a study's trained teacher: another study's `teacher.model` can
    be `models:/<study>-teacher@latest` (MLflow resolves the alias `latest` to the newest version)."""
    return f"{study_name}-teacher"


def log_teacher(teacher: Teacher, cfg: StudyConfig, experiment_id: str, parent_run_id: str,
                sample: np.ndarray) -> str:
    """The teacher's own MLflow run, once per experiment (found again by its cache key). A trained
    single-model teacher is registered too, as `registered_name(study)`."""
    found = tracking.find_runs(experiment_id, "teacher", **{"harness.teacher_key": teacher.key})
    if found:
        return found[0].info.run_id
    with tracking.start("teacher", "teacher", parent_run_id=parent_run_id, experiment_id=experiment_id,
                        tags={"harness.teacher_key": teacher.key}) as run:
        if teacher.trained:
            mlflow.log_params({f"teacher_{k}": v for k, v in dataclasses.asdict(cfg.teacher).items()
                               if k not in LOADED_FIELDS})
        else:
            mlflow.log_params({"teacher_model": json.dumps(cfg.teacher.model), "teacher_outputs": cfg.teacher.outputs,
                               "teacher_outputs_found": ",".join(teacher.outputs), "teacher_endpoint": cfg.teacher.endpoint,
                               "teacher_input": json.dumps(dataclasses.asdict(cfg.teacher.input)
                                                           if cfg.teacher.input else None)})
        tracking.log_history(teacher.history)
        mlflow.log_metrics({"val_accuracy": teacher.val_accuracy, "test_accuracy": teacher.test_accuracy,
                            "params": teacher.params, "flops": teacher.flops,
                            "train_seconds": teacher.train_seconds})
        if teacher.trained:
            for i, m in enumerate(teacher.members):
                info = registry.log_student(m, sample, name="model" if len(teacher.members) == 1 else f"member_{i}")
            if len(teacher.members) == 1:
                mv = registry.register_model(info.model_uri, registered_name(cfg.name))
                log.info("teacher: registered as models:/%s/%s (models:/%s@latest)", mv.name, mv.version, mv.name)
        return run.info.run_id
