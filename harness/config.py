"""A study file (YAML) read into a typed, validated `StudyConfig`.

Every mistake becomes one `ConfigError` line that names the file, the field and
what is allowed, so the command line can exit with code 2 before anything is
written to a store.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("mlp", "cnn")
# Students only: depthwise-separable blocks with a width multiplier, and Keras' MobileNetV3Small
# (distill/families.py).
STUDENT_FAMILIES = (*FAMILIES, "separable", "mobilenet_v3_small")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear_warmup_cosine")  # see schedules.py
OBJECTIVES = ("val_accuracy", "params", "latency_ms", "size_bytes")  # the second one is minimised
EXPORT_FORMATS = ("savedmodel", "tflite", "tflite-int8")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
CHAMPION_RULES = ("smallest_within", "best", "within_teacher")
PRECISIONS = ("float32", "bfloat16", "auto")  # see precision.py
METHODS = ("kd", "dkd", "logit_std")  # distillation losses: see distill/losses.py, distill/methods.py


class UserError(Exception):
    """A mistake the user can fix: the command line prints it as one line, exit code 2."""


class ConfigError(UserError, ValueError):
    """A user mistake in a study file: one line, naming the file and the field."""

    def __init__(self, path: str | Path, field_name: str, message: str):
        self.path, self.field, self.message = str(path), field_name, message
        where = f"{self.path}: {field_name}: " if field_name else f"{self.path}: "
        super().__init__(where + message)


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
class TeacherInputConfig:
    """How a loaded teacher's input differs from the harness's (float32 [batch, h, w, c], 0-255):
    `Rescaling(scale, offset)` in front of it, after a `Resizing` to `size` ([h, w]) when given."""
    scale: float = 1.0
    offset: float = 0.0
    size: list[int] | None = None


TEACHER_OUTPUTS = ("auto", "logits", "probabilities")  # see teacher/loaded.py


@dataclass(frozen=True)
class TeacherConfig:
    family: str = "mlp"
    widths: list[int] = field(default_factory=lambda: [1200, 1200])
    head: int = 128  # cnn only: units of the dense layer after the convolutions
    dropout: float = 0.5
    input_dropout: float = 0.2
    jitter: int = 2  # random shifts of up to this many pixels while training
    members: int = 1  # >1: an ensemble, each member with its own seed
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant | cosine | linear_warmup_cosine
    warmup_epochs: int = 0  # linear_warmup_cosine only
    batch_norm: bool = False  # cnn only: conv -> batch norm -> ReLU
    pooling: str = "flatten"  # cnn only: flatten | gap (global average pooling) before the head
    convs_per_block: int = 1  # cnn only
    jit_compile: bool | None = None  # None: the measured faster choice (see teacher.py)
    # A teacher the harness did not train (docs/own-teacher.md): a .keras file, a SavedModel folder, an
    # MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH), or a list of these (an
    # ensemble). When given, it replaces training and the fields above are unused.
    model: str | list[str] | None = None
    input: TeacherInputConfig | None = None  # null: it takes the harness's images as they are
    outputs: str = "auto"  # logits | probabilities | auto (decided on the validation split)
    endpoint: str = "serving_default"  # SavedModel folders: the signature to call


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
        """The fields of before (the unlabeled ones only when set): fingerprints and keys of
        studies without unlabeled images stay those of before."""
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


@dataclass(frozen=True)
class AugmentConfig:
    jitter: int = 0  # random shifts of up to this many pixels of the student's (and twin's) batches


@dataclass(frozen=True)
class DKDConfig:
    """Decoupled KD's own parameters (Zhao et al. 2022; distill/losses.py `dkd_loss`)."""
    alpha: float = 1.0  # weight of TCKD, the target-class term (the paper's alpha)
    beta: float = 8.0  # weight of NCKD, the non-target term (the paper's beta; mdistiller: 2, 6 or 8)
    warmup: int = 0  # epochs of linear warm-up of the DKD term: min(epoch / warmup, 1), epoch from 1


@dataclass(frozen=True)
class LogitStdConfig:
    """Logit standardization's own parameter (Sun et al. 2024; distill/losses.py `logit_std_loss`);
    its base temperature is `temperature`."""
    weight: float = 10.0  # multiplies the soft term, (1 - alpha) * weight in all: alpha 0.1 -> the paper's 9


@dataclass(frozen=True)
class DistillationConfig:
    # cached: the teacher's logits over the (unaugmented) transfer set, computed once.
    # online: the teacher runs inside each step on the student's own (augmented) batch,
    # the "consistent" teacher of Beyer et al. 2022; it costs a teacher forward pass per step.
    teacher: str = "cached"
    method: str = "kd"  # kd | dkd | logit_std (search.method searches it instead)
    dkd: DKDConfig | None = None  # dkd only (null: DKDConfig's defaults)
    logit_std: LogitStdConfig | None = None  # logit_std only


@dataclass(frozen=True)
class StudentConfig:
    family: str = "mlp"
    depth: int = 2  # mlp: hidden layers of `width` units; cnn: conv blocks width, 2*width, ...
    head: int = 64  # cnn only
    dropout: float = 0.0
    input_dropout: float = 0.0
    batch_norm: bool = False  # cnn only
    pooling: str = "flatten"  # cnn only: flatten | gap
    convs_per_block: int = 1  # cnn only
    augment: AugmentConfig = AugmentConfig()
    # separable only: the channels of every block times this (MobileNet's width multiplier), on top
    # of the searched width (distill/families.py).
    width_multiplier: float = 1.0
    # "package.module:function" (the study file's folder importable), called as
    # function(width, input_shape, num_classes) -> a Keras model that outputs logits; replaces
    # `family` and its options (docs/own-student.md).
    builder: str | None = None

    def key_dict(self) -> dict:
        """The section as cache keys hold it: without `builder` when unset, nor `width_multiplier`
        when 1 (keys of before)."""
        d = dataclasses.asdict(self)
        if d["builder"] is None:
            d.pop("builder")
        if d["width_multiplier"] == 1.0:
            d.pop("width_multiplier")
        return d


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # constant | cosine | linear_warmup_cosine; over the run's steps
    warmup_epochs: int = 0  # linear_warmup_cosine only
    jit_compile: bool | None = None  # None: the measured faster choice (see teacher.resolve_jit)
    # Batches per compiled call: fewer Python round trips per epoch (an MLP epoch
    # about 25% faster, seen while building `harness bench`). Per-batch callbacks
    # then see every 32nd batch.
    steps_per_execution: int = 32
    # Compute precision of the students, their twins and the teacher (see precision.py):
    # bfloat16 layers with float32 variables, loss and metrics; auto: bfloat16 where native.
    precision: str = "float32"


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class WidthSpace:
    choices: list[int] | None = None
    low: int | None = None
    high: int | None = None
    log: bool = True


@dataclass(frozen=True)
class EpochSpace:
    choices: list[int]


@dataclass(frozen=True)
class MethodSpace:
    choices: list[str]


@dataclass(frozen=True)
class DKDSpace:
    """DKD's parameters as search dimensions, suggested only in trials whose method is dkd
    (null: distillation.dkd's value)."""
    alpha: FloatRange | None = None
    beta: FloatRange | None = None
    warmup: EpochSpace | None = None  # choices of warm-up epochs


@dataclass(frozen=True)
class LogitStdSpace:
    weight: FloatRange | None = None  # suggested only in logit_std trials (null: distillation.logit_std's)


@dataclass(frozen=True)
class SearchConfig:
    temperature: FloatRange = FloatRange(1.0, 20.0, log=True)
    alpha: FloatRange | None = FloatRange(0.0, 1.0)  # null: not searched, fixed at 0 (transfer.labels: false)
    width: WidthSpace = WidthSpace(choices=[16, 32, 64, 128, 256, 512, 800])
    # The recipe as search dimensions (null: training's value for every trial). A trial's
    # scratch twin is trained with the same recipe, so a gain never compares two recipes.
    learning_rate: FloatRange | None = None
    epochs: EpochSpace | None = None
    # The distillation method as a categorical dimension (null: distillation.method for every trial),
    # each method's own parameters searched under it (a conditional search space).
    method: MethodSpace | None = None
    dkd: DKDSpace | None = None
    logit_std: LogitStdSpace | None = None
    # The student's depth as a search dimension (null: student.depth for every trial): mlp layers,
    # cnn / separable blocks (search/depth.py).
    depth: EpochSpace | None = None


@dataclass(frozen=True)
class PrunerConfig:
    type: str = "median"
    n_startup_trials: int = 4
    n_warmup_steps: int = 1


@dataclass(frozen=True)
class ChampionConfig:
    rule: str = "smallest_within"
    # accuracy points below the best confirmed validation mean (smallest_within), or below the
    # teacher's validation accuracy (within_teacher: deploy/compression.py)
    tolerance: float = 0.5


@dataclass(frozen=True)
class ArmConfig:
    """One distilled arm of the confirmation: how the teacher is consulted and how the
    student's batches are jittered. Its scratch twin sees the same jittered batches."""
    name: str
    teacher: str = "cached"  # cached | online (see DistillationConfig)
    jitter: int = 0
    # The arm's own transfer set and epochs (null: the file's): e.g. 1%, 3% and all of the data in
    # one confirmation, each arm with its own scratch twin on the same data.
    transfer: TransferConfig | None = None
    epochs: int | None = None
    # The arm's distillation method (null: the trial's) and its parameters (null: the trial's when it
    # has the same method, else distillation's): e.g. one configuration under kd, dkd and logit_std.
    method: str | None = None
    temperature: float | None = None
    alpha: float | None = None
    dkd: DKDConfig | None = None
    logit_std: LogitStdConfig | None = None


@dataclass(frozen=True)
class ConfirmConfig:
    """After the search: the chosen configurations again over fresh seeds, each paired with
    its scratch twin, so gains come with confidence intervals. 0 turns it off."""
    seeds: int = 5
    # Several distilled arms per configuration (e.g. cached vs consistent online), compared
    # with each other seed by seed too; null: one arm, the file's distillation and augment.
    arms: list[ArmConfig] | None = None
    # An arm whose scratch twin every arm's students are also compared with, paired by seed
    # (e.g. the full-data scratch student of a few-examples study).
    reference: str | None = None
    # Train the seeds of one configuration together, distilled and scratch, as one population
    # (stacked weights, see distill/population.py); false: one run after another.
    together: bool = True


@dataclass(frozen=True)
class HeartbeatConfig:
    interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 30  # a trial silent this long is failed and retried


@dataclass(frozen=True)
class StudyConfig:
    name: str
    seed: int = 0
    dataset: DatasetConfig = DatasetConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    training: TrainingConfig = TrainingConfig()
    distillation: DistillationConfig = DistillationConfig()
    transfer: TransferConfig = TransferConfig()
    search: SearchConfig = SearchConfig()
    objectives: list[str] = field(default_factory=lambda: ["val_accuracy", "params"])
    max_params: int | None = None
    pruner: PrunerConfig = PrunerConfig()
    n_trials: int = 20
    champion: ChampionConfig = ChampionConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    exports: list[str] = field(default_factory=lambda: list(EXPORT_FORMATS))  # what `study` exports
    # The int8 TFLite file is placed when its validation accuracy is at most this many points below
    # the float student's (its top-1 agreement is reported, not gated on).
    exports_int8_max_drop: float = 1.0
    source: str = ""  # the file it was read from (not a YAML key)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) == 2

    @property
    def cost(self) -> str:
        """What the second objective minimises (and `smallest_within` means by smallest): a
        TrialRecord field, `params` with one objective."""
        return self.objectives[1] if self.multi_objective else "params"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def search_space_fingerprint(self) -> str:
        """What must match for a stored study to be resumed with this file: a hash of
        `study_fingerprint(self.to_dict())`."""
        blob = json.dumps(study_fingerprint(self.to_dict()), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def methods(self) -> list[str]:
        """The distillation methods the search tries: search.method's choices, or distillation.method."""
        return list(self.search.method.choices) if self.search.method else [self.distillation.method]


# ---------------------------------------------------------------- the study's fingerprint

# The sections (and top-level fields) that change what a trial trains or how it is scored: a stored
# study resumed with another value of any of them would mix two studies in one Pareto front.
FINGERPRINT_SECTIONS = ("seed", "dataset", "teacher", "student", "training", "distillation", "method", "transfer",
                        "search", "objectives", "max_params")
# Fields inside them that change how fast, not what, is trained.
FINGERPRINT_SPEED_ONLY = ("teacher.jit_compile", "training.jit_compile", "training.steps_per_execution")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def study_fingerprint(config_dict: dict) -> dict[str, Any]:
    """The fields of a study's config (as `StudyConfig.to_dict()` gives it, or as stored with an
    older study: missing fields take today's defaults) that must match for the stored study to be
    resumed, flattened to dotted names -> JSON values (`{"student.depth": 2, ...}`).

    Everything that changes what a trial trains: the seed, the dataset, the teacher, the student,
    the recipe (`training`), the distillation section (and `method`, when a study file has one),
    the transfer set, the search space and the objectives; not the speed-only fields
    (`FINGERPRINT_SPEED_ONLY`), nor the trial budget, pruner, champion rule, confirmation or exports.
    """
    defaults = _flatten(dataclasses.asdict(StudyConfig(name="-")))
    given = _flatten(json.loads(json.dumps(config_dict)))  # tuples -> lists, as stored
    merged = dict(given)
    for k, v in defaults.items():  # a default fills a field the stored config does not hold at all
        parts = k.split(".")
        if k in given or any(".".join(parts[:i]) in given for i in range(1, len(parts))) \
                or any(g.startswith(k + ".") for g in given):
            continue
        merged[k] = v
    return {k: v for k, v in sorted(merged.items())
            if k.split(".")[0] in FINGERPRINT_SECTIONS and k not in FINGERPRINT_SPEED_ONLY}


def fingerprint_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, stored value, current value) for each field where two fingerprints differ, in order."""
    missing = object()
    out = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k, missing), current.get(k, missing)
        if a != b:
            out.append((k, None if a is missing else a, None if b is missing else b))
    return out


# ---------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, where: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) > 1:  # e.g. str | list[str]: the first type the value fits
            for a in others:
                try:
                    return _coerce(value, a, where, path)
                except ConfigError:
                    pass
            raise ConfigError(path, where, f"expected {_type_name(tp)}, got {value!r}")
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where, path)
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ConfigError(path, where, f"expected {_type_name(tp)}, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, where, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, where, f"expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan / .inf: every float field of a study is finite
            raise ConfigError(path, where, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, where, f"expected a string, got {value!r}")
        return value
    raise TypeError(tp)  # a field type this parser does not know: a bug, not user input


def _build(cls: Any, data: Any, where: str, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path, where or "(top level)", f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(names)}"
            raise ConfigError(path, f"{where}.{key}".lstrip("."), "unknown key" + hint)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{where}.{f.name}".lstrip("."), path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(path, f"{where}.{f.name}".lstrip("."), "is required")
    return cls(**kwargs)


def _check(cfg: StudyConfig, path: str) -> None:
    def fail(field_name: str, message: str) -> None:
        raise ConfigError(path, field_name, message)

    if not cfg.name.strip():
        fail("name", "must not be empty")
    if not 0.0 < cfg.dataset.validation_fraction < 1.0:
        fail("dataset.validation_fraction", "must be between 0 and 1 (exclusive)")
    if cfg.dataset.limit is not None and cfg.dataset.limit < 10:
        fail("dataset.limit", "must be at least 10 (or null for the whole split)")
    _check_dataset(cfg.dataset, fail)
    for section, allowed in (("teacher", FAMILIES), ("student", STUDENT_FAMILIES)):
        m = getattr(cfg, section)
        if m.family not in allowed:
            fail(f"{section}.family", f"unknown model family {m.family!r}; allowed: {', '.join(allowed)}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(m, name) < 1.0:
                fail(f"{section}.{name}", "must be in [0, 1)")
    t = cfg.teacher
    if any(w < 1 for w in t.widths):
        fail("teacher.widths", "every width must be at least 1")
    if t.jitter < 0:
        fail("teacher.jitter", "must be 0 or more pixels")
    if t.members < 1:
        fail("teacher.members", "must be at least 1")
    _check_loaded_teacher(t, fail)
    if cfg.student.augment.jitter < 0:
        fail("student.augment.jitter", "must be 0 or more pixels")
    if cfg.distillation.teacher not in ("cached", "online"):
        fail("distillation.teacher", f"unknown mode {cfg.distillation.teacher!r}; allowed: cached, online")
    if cfg.student.augment.jitter and cfg.distillation.teacher == "cached":
        fail("distillation.teacher", "student.augment needs `teacher: online`: the cached logits are of "
                                     "unaugmented images, so they would not match the student's batches")
    if cfg.student.depth < 1:
        fail("student.depth", "must be at least 1")
    if not (math.isfinite(cfg.student.width_multiplier) and cfg.student.width_multiplier > 0):
        fail("student.width_multiplier", "must be a finite number greater than 0")
    if cfg.search.depth is not None and (not cfg.search.depth.choices or any(d < 1 for d in cfg.search.depth.choices)):
        fail("search.depth.choices", "give one or more depths, each at least 1")
    if cfg.student.builder is not None and not _builder_syntax(cfg.student.builder):
        fail("student.builder", f"expected \"package.module:function\", got {cfg.student.builder!r}")
    for section in ("teacher", "student"):
        m = getattr(cfg, section)
        if m.pooling not in ("flatten", "gap"):
            fail(f"{section}.pooling", f"unknown pooling {m.pooling!r}; allowed: flatten, gap")
        if m.convs_per_block < 1:
            fail(f"{section}.convs_per_block", "must be at least 1")
    for section in ("teacher", "training"):
        s = getattr(cfg, section)
        if s.schedule not in SCHEDULES:
            fail(f"{section}.schedule", f"unknown schedule {s.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if s.warmup_epochs < 0 or (s.warmup_epochs and s.schedule != "linear_warmup_cosine"):
            fail(f"{section}.warmup_epochs", "0 or more, and only with schedule: linear_warmup_cosine")
        if s.schedule == "linear_warmup_cosine" and not 0 < s.warmup_epochs < s.epochs:
            fail(f"{section}.warmup_epochs", "linear_warmup_cosine needs 0 < warmup_epochs < epochs")
        if s.epochs < 1:
            fail(f"{section}.epochs", "must be at least 1")
        if s.batch_size < 1:
            fail(f"{section}.batch_size", "must be at least 1")
        if s.learning_rate <= 0:
            fail(f"{section}.learning_rate", "must be greater than 0")
        if section == "training" and s.steps_per_execution < 1:
            fail("training.steps_per_execution", "must be at least 1")
        if section == "training" and s.precision not in PRECISIONS:
            fail("training.precision", f"unknown precision {s.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if s.optimizer not in OPTIMIZERS:
            fail(f"{section}.optimizer", f"unknown optimizer {s.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    sp = cfg.search
    _check_transfer(cfg.transfer, "transfer", fail)
    if cfg.transfer.labels and sp.alpha is None:
        fail("search.alpha", "null (alpha fixed at 0) needs transfer.labels: false; to fix alpha, "
                             "give {low: a, high: a}")
    if not cfg.transfer.labels and sp.alpha is not None:
        fail("search.alpha", "transfer.labels: false trains on soft targets only (alpha is 0): "
                             "set search.alpha: null")
    for name, r in (("temperature", sp.temperature), ("alpha", sp.alpha or FloatRange(0.0, 0.0))):
        if r.low > r.high:
            fail(f"search.{name}", f"low ({r.low:g}) is greater than high ({r.high:g})")
    if sp.learning_rate is not None:
        if not 0 < sp.learning_rate.low <= sp.learning_rate.high:
            fail("search.learning_rate", "needs 0 < low <= high")
    if sp.epochs is not None and any(e < 1 for e in sp.epochs.choices):
        fail("search.epochs.choices", "every epoch count must be at least 1")
    if sp.temperature.low <= 0:
        fail("search.temperature.low", "temperature must be greater than 0")
    if sp.alpha is not None and (sp.alpha.low < 0 or sp.alpha.high > 1):
        fail("search.alpha", "alpha must lie in [0, 1]")
    w = sp.width
    if w.choices is not None:
        if w.low is not None or w.high is not None:
            fail("search.width", "give either choices or low/high, not both")
        if any(c < 1 for c in w.choices):
            fail("search.width.choices", "every width must be at least 1")
    else:
        if w.low is None or w.high is None:
            fail("search.width", "give choices, or both low and high")
        if w.low < 1:
            fail("search.width.low", "width must be at least 1")
        if w.low > w.high:
            fail("search.width", f"low ({w.low}) is greater than high ({w.high})")
    if not cfg.objectives or any(o not in OBJECTIVES for o in cfg.objectives) \
            or cfg.objectives[0] != "val_accuracy" or len(set(cfg.objectives)) != len(cfg.objectives) \
            or len(cfg.objectives) > 2:
        fail("objectives", "allowed: [val_accuracy], or [val_accuracy, X] with X one of params, latency_ms, "
             "size_bytes")
    if any(f not in EXPORT_FORMATS for f in cfg.exports) or len(set(cfg.exports)) != len(cfg.exports):
        fail("exports", f"allowed: a list of distinct formats among {', '.join(EXPORT_FORMATS)}")
    if not 0.0 <= cfg.exports_int8_max_drop <= 100.0:
        fail("exports_int8_max_drop", "must be between 0 and 100 accuracy points")
    if cfg.max_params is not None and cfg.max_params < 1:
        fail("max_params", "must be at least 1 (or null)")
    if cfg.pruner.type not in PRUNERS:
        fail("pruner.type", f"unknown pruner {cfg.pruner.type!r}; allowed: {', '.join(PRUNERS)}")
    if cfg.n_trials < 1:
        fail("n_trials", "must be at least 1")
    if cfg.champion.rule not in CHAMPION_RULES:
        fail("champion.rule", f"unknown rule {cfg.champion.rule!r}; allowed: {', '.join(CHAMPION_RULES)}")
    if not math.isfinite(cfg.champion.tolerance) or cfg.champion.tolerance < 0:
        fail("champion.tolerance", f"must be a finite number of accuracy points, 0 or more (got {cfg.champion.tolerance})")
    if cfg.confirm.seeds < 0 or cfg.confirm.seeds == 1:
        fail("confirm.seeds", "must be 0 (off) or at least 2 (an interval needs two seeds)")
    names = set()
    for i, arm in enumerate(cfg.confirm.arms or []):
        where = f"confirm.arms[{i}]"
        if not arm.name.strip() or arm.name in names:
            fail(f"{where}.name", f"must be a unique, non-empty name (got {arm.name!r})")
        names.add(arm.name)
        if arm.teacher not in ("cached", "online"):
            fail(f"{where}.teacher", f"unknown mode {arm.teacher!r}; allowed: cached, online")
        if arm.jitter < 0:
            fail(f"{where}.jitter", "must be 0 or more pixels")
        if arm.jitter and arm.teacher == "cached":
            fail(f"{where}.teacher", "jitter needs `teacher: online`: the cached logits are of unaugmented "
                                     "images, so they would not match the student's batches")
        if arm.transfer is not None:
            _check_transfer(arm.transfer, f"{where}.transfer", fail)
            if arm.transfer.labels != cfg.transfer.labels:
                fail(f"{where}.transfer.labels", "must equal transfer.labels: the arm's students take the "
                                                 "search's alpha")
        if arm.epochs is not None and (arm.epochs < 1 or sp.epochs is not None):
            fail(f"{where}.epochs", "must be at least 1, and only when search.epochs is null")
    if cfg.confirm.reference is not None and cfg.confirm.reference not in names:
        fail("confirm.reference", f"names no arm in confirm.arms (got {cfg.confirm.reference!r})")
    _check_methods(cfg, fail)
    if cfg.heartbeat.interval < 1 or cfg.heartbeat.grace_period <= cfg.heartbeat.interval:
        fail("heartbeat", "interval must be at least 1 s and grace_period longer than interval")


def _check_loaded_teacher(t: TeacherConfig, fail) -> None:
    """`teacher.model` and its companions (the model itself is read once the data are loaded)."""
    if t.model is None:
        for name, default in (("input", None), ("outputs", "auto"), ("endpoint", "serving_default")):
            if getattr(t, name) != default:
                fail(f"teacher.{name}", "only with teacher.model (a teacher the harness loads instead of training)")
        return
    refs = [t.model] if isinstance(t.model, str) else t.model
    if any(not r.strip() for r in refs):
        fail("teacher.model", "must not be empty")
    if t.members != 1:
        fail("teacher.members", "only for a trained teacher; an ensemble of loaded teachers is a list in teacher.model")
    if t.outputs not in TEACHER_OUTPUTS:
        fail("teacher.outputs", f"unknown value {t.outputs!r}; allowed: {', '.join(TEACHER_OUTPUTS)}")
    if not t.endpoint.strip():
        fail("teacher.endpoint", "must not be empty")
    if t.input is not None:
        if t.input.scale == 0:
            fail("teacher.input.scale", "must not be 0")
        if t.input.size is not None and (len(t.input.size) != 2 or any(s < 1 for s in t.input.size)):
            fail("teacher.input.size", f"expected [height, width], each at least 1 (got {t.input.size})")


def _builder_syntax(name: str) -> bool:
    """`module:function` with dotted identifiers on both sides (what `pkgutil.resolve_name` reads)."""
    module, colon, attr = name.partition(":")
    return bool(colon) and all(p.isidentifier() for p in module.split(".")) \
        and all(p.isidentifier() for p in attr.split("."))


def _check_dataset(d: DatasetConfig, fail) -> None:
    """The dataset section's own rules (what the data hold is checked when they are read)."""
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


def _check_method_params(where: str, method: str | None, dkd, logit_std, fail, whose: str) -> None:
    """A method's own section only under that method; weights not negative."""
    for name, section in (("dkd", dkd), ("logit_std", logit_std)):
        if section is not None and method != name:
            fail(f"{where}.{name}", f"parameters of method {name}, but {whose} method is {method or 'not set'}"
                                    f" (allowed here: {method or 'none'}'s own)")
    if dkd is not None:
        if dkd.alpha < 0 or dkd.beta < 0:
            fail(f"{where}.dkd", f"weights alpha and beta must be 0 or more (got {dkd.alpha:g}, {dkd.beta:g})")
        if dkd.warmup < 0:
            fail(f"{where}.dkd.warmup", "must be 0 or more epochs")
    if logit_std is not None and logit_std.weight < 0:
        fail(f"{where}.logit_std.weight", f"must be 0 or more (got {logit_std.weight:g})")


def _check_methods(cfg: StudyConfig, fail) -> None:
    """distillation.method, search.method and confirm.arms' methods (see distill/methods.py)."""
    d, sp = cfg.distillation, cfg.search
    if d.method not in METHODS:
        fail("distillation.method", f"unknown method {d.method!r}; allowed: {', '.join(METHODS)}")
    if sp.method is not None:
        bad = [m for m in sp.method.choices if m not in METHODS]
        if bad or len(set(sp.method.choices)) != len(sp.method.choices):
            fail("search.method.choices", f"distinct methods among {', '.join(METHODS)} (got {sp.method.choices})")
    methods = cfg.methods
    for name in ("dkd", "logit_std"):
        for where in ("distillation", "search"):
            if getattr(getattr(cfg, where), name) is not None and name not in methods:
                fail(f"{where}.{name}", f"parameters of method {name}, but the study's method is "
                                        f"{' or '.join(methods)} (search.method offers no {name})")
    _check_method_params("distillation", "dkd" if d.dkd else "logit_std" if d.logit_std else None,
                         d.dkd, d.logit_std, fail, "the")
    for where, r in (("search.dkd.alpha", sp.dkd and sp.dkd.alpha), ("search.dkd.beta", sp.dkd and sp.dkd.beta),
                     ("search.logit_std.weight", sp.logit_std and sp.logit_std.weight)):
        if r and (r.low < 0 or r.low > r.high or (r.log and r.low <= 0)):
            fail(where, "needs 0 <= low <= high (0 < low with log: true): a weight is never negative")
    if sp.dkd and sp.dkd.warmup and any(w < 0 for w in sp.dkd.warmup.choices):
        fail("search.dkd.warmup.choices", "every warm-up must be 0 or more epochs")
    for i, arm in enumerate(cfg.confirm.arms or []):
        where = f"confirm.arms[{i}]"
        if arm.method is not None and arm.method not in METHODS:
            fail(f"{where}.method", f"unknown method {arm.method!r}; allowed: {', '.join(METHODS)}")
        _check_method_params(where, arm.method, arm.dkd, arm.logit_std, fail, "this arm's")
        if arm.temperature is not None and arm.temperature <= 0:
            fail(f"{where}.temperature", "must be greater than 0")
        if arm.alpha is not None and not 0 <= arm.alpha <= 1:
            fail(f"{where}.alpha", "alpha must lie in [0, 1]")
        if arm.alpha not in (None, 0.0) and not cfg.transfer.labels:
            fail(f"{where}.alpha", "transfer.labels: false trains on soft targets only (alpha is 0)")


def _check_transfer(t: TransferConfig, where: str, fail, num_classes: int | None = None) -> None:
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


def check_classes(cfg: StudyConfig, num_classes: int) -> None:
    """The transfer sections against the dataset's classes (once its class count is known)."""
    def fail(field_name: str, message: str) -> None:
        raise ConfigError(cfg.source, field_name, message)

    _check_transfer(cfg.transfer, "transfer", fail, num_classes)
    for i, arm in enumerate(cfg.confirm.arms or []):
        if arm.transfer is not None:
            _check_transfer(arm.transfer, f"confirm.arms[{i}].transfer", fail, num_classes)


def parse(data: Any, path: str = "<dict>") -> StudyConfig:
    """Validate a mapping (as read from YAML) into a `StudyConfig`."""
    raw = data.get("dataset") if isinstance(data, dict) else None
    given = [k for k in ("name", "folder", "arrays") if isinstance(raw, dict) and raw.get(k) is not None]
    if len(given) > 1:  # `name` has a default, so only the file says whether it was given too
        raise ConfigError(path, f"dataset.{given[-1]}", "give exactly one of dataset.name, dataset.folder and "
                                                        f"dataset.arrays (got {', '.join(given)})")
    cfg = _build(StudyConfig, data, "", path)
    _check(cfg, path)
    return dataclasses.replace(cfg, source=str(path), dataset=_resolved_paths(cfg.dataset, path))


def _resolved_paths(d: DatasetConfig, path: str) -> DatasetConfig:
    """The dataset's folder or .npz path, relative to the study file's folder (absolute stays)."""
    base = Path(path).parent
    return dataclasses.replace(d, **{k: str(base / getattr(d, k)) for k in ("folder", "arrays")
                                     if getattr(d, k) is not None and not Path(getattr(d, k)).is_absolute()})


def load(path: str | Path) -> StudyConfig:
    """Read and validate a study file; every problem is a one-line `ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(p, "", "no such study file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(p, "", f"malformed YAML: {where}{problem}") from None
    return parse(data, str(p))
