"""A teacher the harness did not train: `teacher.model` (docs/own-teacher.md).

It is read from a `.keras` file (`keras.saving.load_model`, safe mode), a SavedModel folder
(`keras.layers.TFSMLayer` on `teacher.endpoint`), an MLflow model URI in the study's tracking
store (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/ID/PATH`), or a list of these (an
ensemble, its soft targets averaged as a trained ensemble's are). Each is adapted once, here, to
the harness's contract: float32 images [batch, h, w, c] with values 0-255 in (a `Resizing` to
`teacher.input.size` and a `Rescaling(scale, offset)` in front when given), logits out (a model
whose outputs are probabilities gets `log(max(p, tiny))` behind it: logits of the same
distribution, so softmax(z / T) are Hinton et al.'s (2015) soft targets). It is then checked on
the data: input shape, output width against the classes, and accuracy (cache.check_usable).

Its cache key holds what the model is, not where: the SHA-256 of its files (for a folder: of
each file's relative path and content; for a registry URI: the model version's source and run
and its artifact files), plus `teacher.input`, `outputs` and `endpoint`.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow.tracking import MlflowClient

from harness import files, tracking
from harness.config import ConfigError, StudyConfig
from harness.data import sources
from harness.data.evaluate import ensemble_accuracy, ensemble_logits, predict_logits
from harness.teacher import cache, class_order, signature
from harness.teacher.cache import Teacher

log = logging.getLogger(__name__)
FIELD = "teacher.model"
REGISTRY = ("models:/", "runs:/")
TINY = float(np.finfo(np.float32).tiny)  # log(0) guard only: no probability a float32 softmax gives is clipped
_hashed: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> SHA-256: repeated keys hash a file once
_registry: dict[tuple, tuple[dict, Path]] = {}  # (store, URI) -> (what it resolved to, its downloaded folder)


def references(cfg: StudyConfig) -> list[str]:
    """`teacher.model` as a list: URIs as written, paths resolved against the study file's folder."""
    refs = [cfg.teacher.model] if isinstance(cfg.teacher.model, str) else list(cfg.teacher.model)
    base = Path(cfg.source).resolve().parent if cfg.source else Path.cwd()
    out = []
    for r in refs:
        if r.startswith(REGISTRY):
            out.append(r)
        elif "://" in r or r.startswith(("models:", "runs:")):
            raise ConfigError(cfg.source, FIELD, f"{r}: unsupported URI; give a path, models:/NAME@ALIAS, "
                                                 "models:/NAME/VERSION or runs:/ID/PATH")
        else:
            out.append(str((base / Path(r).expanduser()).resolve()))
    return out


def use_store(cfg: StudyConfig, tracking_uri: str | None) -> None:
    """Point MLflow at the study's tracking store when a registry URI needs it (and the store exists:
    a URI cannot resolve in a store that was never written, and this must not create one)."""
    if tracking_uri is None or not any(r.startswith(REGISTRY) for r in references(cfg)):
        return
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):].split("?")[0])
        if not db.is_file():
            first = next(r for r in references(cfg) if r.startswith(REGISTRY))
            raise ConfigError(cfg.source, FIELD, f"{first}: does not resolve: the tracking store {tracking_uri} "
                                                 "does not exist (give the study's --workdir or --tracking-uri)")
    mlflow.set_tracking_uri(tracking.internal_uri(tracking_uri))


def _file_sha(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if k not in _hashed:
        _hashed[k] = files.sha256(path)
    return _hashed[k]


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file of a folder: its relative path and its content's SHA-256."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\0{_file_sha(p)}\n".encode())
    return h.hexdigest()


def _resolve(cfg: StudyConfig, uri: str) -> tuple[dict, Path]:
    """A registry URI's model version (or run) and its artifacts, downloaded once per process and store
    (so an alias moved during a study does not change its keys midway)."""
    memo = (mlflow.get_tracking_uri(), uri)
    if memo in _registry:
        return _registry[memo]
    client = MlflowClient()
    try:
        if uri.startswith("runs:/"):
            run_id = uri[len("runs:/"):].split("/", 1)[0]
            what = {"kind": "mlflow", "run_id": client.get_run(run_id).info.run_id}
            download = uri
        else:
            body = uri[len("models:/"):]
            if "@" in body:
                name, alias = body.rsplit("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            elif body.count("/") == 1 and body.split("/")[1].isdigit():
                name, version = body.split("/")
                mv = client.get_model_version(name, version)
            else:
                raise ConfigError(cfg.source, FIELD, f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
            what = {"kind": "mlflow", "name": name, "version": str(mv.version), "source": mv.source,
                    "run_id": mv.run_id}
            download = f"models:/{name}/{mv.version}"
        local = Path(tempfile.mkdtemp(prefix="harness-teacher-"))
        atexit.register(shutil.rmtree, local, True)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=download, dst_path=str(local)))
    except mlflow.exceptions.MlflowException as e:
        first = (e.message if hasattr(e, "message") else str(e)).strip().splitlines()[0][:200]
        raise ConfigError(cfg.source, FIELD, f"{uri}: does not resolve in the tracking store "
                                             f"{tracking.shown_uri(mlflow.get_tracking_uri())} "
                                             f"({tracking.shown_uri(first)})") from None
    what["sha256"] = folder_digest(local)
    _registry[memo] = (what, local)
    return what, local


def layered(cfg: StudyConfig) -> list:
    """Each reference's model as its file holds it (a Keras model; a `TFSMLayer` for a SavedModel
    folder; an MLflow URI's model as `mlflow.keras` loads it, downloaded once per process), read without
    writing anything: what a method that reads the teacher's layers checks before the stores are written."""
    return [_read(cfg, r) for r in references(cfg)]


def _identity(cfg: StudyConfig, ref: str) -> tuple[dict, Path]:
    """What a reference is (its kind and content digest) and where its files are on this machine."""
    if ref.startswith(REGISTRY):
        return _resolve(cfg, ref)
    p = Path(ref)
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise ConfigError(cfg.source, FIELD, f"{p}: not a SavedModel folder (no saved_model.pb)")
        return {"kind": "savedmodel", "sha256": folder_digest(p)}, p
    if p.is_file():
        if p.suffix != ".keras":
            raise ConfigError(cfg.source, FIELD, f"{p}: not a .keras file (a Keras model saved with "
                                                 "model.save('NAME.keras'), or a SavedModel folder)")
        return {"kind": "keras", "sha256": _file_sha(p)}, p
    raise ConfigError(cfg.source, FIELD, f"{p}: no such file or folder")


def key_part(cfg: StudyConfig) -> dict:
    """The teacher's part of its cache key: what each model is (content digests), and how it is used."""
    t = cfg.teacher
    return {"model": [_identity(cfg, r)[0] for r in references(cfg)],
            "input": dataclasses.asdict(t.input) if t.input is not None else None,
            "outputs": t.outputs, "endpoint": t.endpoint}


def _read(cfg: StudyConfig, ref: str):
    """The model behind a reference, as Keras reads it (a Model, or a TFSMLayer)."""
    what, local = _identity(cfg, ref)
    try:
        if what["kind"] == "savedmodel":
            return keras.layers.TFSMLayer(str(local), call_endpoint=cfg.teacher.endpoint)
        if what["kind"] == "keras":
            return keras.saving.load_model(local, safe_mode=True, compile=False)
        return mlflow.keras.load_model(str(local))
    except Exception as e:  # noqa: BLE001 - whatever the reader says, the file is not a usable model
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        field_name = "teacher.endpoint" if what["kind"] == "savedmodel" and "endpoint" in first else FIELD
        raise ConfigError(cfg.source, field_name, signature.load_error(ref, e)) from None


def _adapt(cfg: StudyConfig, raw, ref: str, splits: sources.Splits, name: str) -> tuple[keras.Model, str]:
    """The model behind the harness's contract (see the module's docstring), its shapes checked, fed
    the dtype its signature takes; and the dtype it computes its output in."""
    inp = cfg.teacher.input
    h, w, c = splits.image_shape
    fed = (*(tuple(inp.size) if inp is not None and inp.size else (h, w)), c)
    expected = signature.expected_shape(raw)
    if expected is not None and (len(expected) != 3 or any(e is not None and e != f
                                                           for e, f in zip(expected, fed))):
        fix = ("set teacher.input.size: [height, width] to resize them" if len(expected) == 3 and
               expected[2] == c else "its channels or rank differ from the data's: it does not fit these images")
        raise ConfigError(cfg.source, FIELD, f"{ref}: expects input of shape {list(expected)}, gets {list(fed)} "
                                             f"(the data's images are {[h, w, c]}); {fix}")
    x = keras.Input((h, w, c), dtype="float32", name="images")
    y = x
    if fed[:2] != (h, w):
        y = keras.layers.Resizing(*fed[:2], name="resize")(y)
    if inp is not None:
        y = keras.layers.Rescaling(inp.scale, inp.offset, name="rescale")(y)
    y = signature.cast_input(y, signature.input_dtype(raw))
    try:
        y = raw(y)
    except Exception as e:  # noqa: BLE001 - a model that cannot take these images
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(cfg.source, FIELD, f"{ref}: cannot take images of shape {[None, *fed]} ({first})") \
            from None
    outs = tf.nest.flatten(y)
    if len(outs) != 1:
        raise ConfigError(cfg.source, FIELD, f"{ref}: gives {len(outs)} outputs; a teacher gives one, "
                                             "[batch, classes]")
    y = outs[0]
    if len(y.shape) != 2 or y.shape[-1] != splits.num_classes:
        raise ConfigError(cfg.source, FIELD, f"{ref}: outputs shape {list(y.shape)}, the data have "
                                             f"{splits.num_classes} classes ([batch, {splits.num_classes}] expected)")
    return keras.Model(x, keras.ops.cast(y, "float32"), name=name), str(getattr(y.dtype, "name", y.dtype))


def _as_logits(cfg: StudyConfig, model: keras.Model, ref: str, images: np.ndarray, dtype: str = "float32"
               ) -> tuple[keras.Model, str]:
    """The model returning float32 logits, and what its outputs were (teacher.outputs, or found on
    `images`: every row non-negative and summing to 1 within the precision of `dtype`, the dtype the
    model computes its output in (`signature.sum_tolerance`), means probabilities)."""
    out = predict_logits(model, images)
    tol = signature.sum_tolerance(dtype)
    probs = bool(np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, rtol=0.0, atol=tol))
    kind = cfg.teacher.outputs
    if kind == "auto":
        kind = "probabilities" if probs else "logits"
        log.info("teacher %s: outputs are %s (found on the validation split: every row %s)", ref, kind,
                 "is non-negative and sums to 1" if probs else "is not a probability distribution")
    elif kind == "probabilities" and not probs:
        raise ConfigError(cfg.source, "teacher.outputs", f"probabilities, but {ref}'s outputs on validation are not "
                                                         f"(negative, or rows not summing to 1 within {tol:g}, the "
                                                         f"precision of its {dtype} outputs): use logits or auto")
    elif kind == "logits" and probs:
        log.warning("teacher %s: teacher.outputs is logits, but its outputs on validation look like probabilities"
                    " (a final softmax?): its soft targets will be wrong unless they are logits", ref)
    if kind == "probabilities":
        model = keras.Model(model.input, keras.ops.log(keras.ops.maximum(model.output, TINY)), name=model.name)
    return model, kind


def load(cfg: StudyConfig, splits: sources.Splits, cache_dir: str | Path, key: str) -> Teacher:
    """The study's teacher from `teacher.model`: adapted, checked, scored on validation and test, its
    transfer-set logits from the cache entry `key` when there, else computed and cached.

    Raises ConfigError (one line, exit 2) for a missing file, a file that is not a model, a URI that
    does not resolve, a teacher whose input shape or class count does not fit the data, outputs that
    are not what teacher.outputs says, non-finite logits or a teacher near chance."""
    members, kinds = [], []
    for i, ref in enumerate(references(cfg)):
        model, dtype = _adapt(cfg, _read(cfg, ref), ref, splits, name=f"teacher_{i}")
        model, kind = _as_logits(cfg, model, ref, splits.validation.images, dtype)
        members.append(model)
        kinds.append(kind)
    entry = Path(cache_dir) / key
    if entry.exists():
        try:
            manifest, _, logits = cache.read(entry, key)
            log.info("teacher: %s, logits from cache %s (val acc %.4f)", cfg.teacher.model, entry,
                     manifest["val_accuracy"])
            return Teacher(members, logits, manifest["val_accuracy"], manifest["test_accuracy"], key, entry,
                           from_cache=True, trained=False, outputs=kinds, warnings=manifest.get("warnings", []))
        except Exception as e:  # noqa: BLE001 - any damage means: rebuild
            log.warning("teacher cache %s is damaged (%s); rebuilding it", entry, e)
    logits = ensemble_logits(members, splits.transfer.images)
    val_logits = ensemble_logits(members, splits.validation.images)
    val_acc = ensemble_accuracy(val_logits, splits.validation.labels)
    note = class_order.check(cfg.source, FIELD, f"the teacher {cfg.teacher.model}", val_logits,
                             splits.validation.labels, splits.class_names)
    if note:
        log.warning("%s", note)
    test_acc = ensemble_accuracy(ensemble_logits(members, splits.test.images), splits.test.labels)
    what = f"the teacher {cfg.teacher.model}"
    cache.check_usable(cfg, FIELD, what, logits, val_acc, splits.validation.labels, splits.num_classes,
                       "is its head trained for these classes, in this order, and does it expect this input "
                       "range? see teacher.input")
    with files.locked(Path(cache_dir) / f"{key}.lock"):
        cache.write(entry, key, [], logits, members=len(members), val_accuracy=val_acc, test_accuracy=test_acc,
                    history=[], train_seconds=0.0, outputs=kinds, model=cfg.teacher.model,
                    warnings=[note] if note else [])
    log.info("teacher: loaded %s (outputs: %s), val acc %.4f, test acc %.4f; logits cached at %s",
             cfg.teacher.model, ", ".join(kinds), val_acc, test_acc, entry)
    return Teacher(members, logits, val_acc, test_acc, key, entry, from_cache=False, trained=False, outputs=kinds,
                   warnings=[note] if note else [])
