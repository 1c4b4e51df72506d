"""A whole study file: `StudyConfig` (every section), its fingerprint (what a resumed study must
match), and reading it: safe YAML, the sections built and checked one by one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config.confirm import ConfirmConfig, check_confirm
from harness.config.data import DatasetConfig, TransferConfig, check_dataset, check_transfer
from harness.config.deploy import EXPORT_FORMATS, ChampionConfig, check_deploy
from harness.config.errors import ConfigError
from harness.config.methods import DistillationConfig, check_distillation, check_methods
from harness.config.parsing import build
from harness.config.search import (HeartbeatConfig, PrunerConfig, SearchConfig, check_objectives,
                                   check_search)
from harness.config.student import StudentConfig, check_student
from harness.config.teacher import TeacherConfig, check_teacher
from harness.config.training import TrainingConfig, check_recipe


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
    # What `study` exports; `[]`: nothing (a list field is otherwise never empty).
    exports: list[str] = field(default_factory=lambda: list(EXPORT_FORMATS), metadata={"may_be_empty": True})
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
    """The fields of a study's config (as `StudyConfig.to_dict()` gives it, or as stored with a study
    whose config lacks some fields: those take their defaults) that must match for the stored study to be
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
    """(field, stored value, current value) for each field where two fingerprints differ, in order.
    A field one side lacks and the other holds as null (an optional section added to the study file
    since, e.g. `distillation.views`, at its default) is no difference."""
    missing = object()
    out = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k, missing), current.get(k, missing)
        if a != b and {id(a), id(b)} != {id(missing), id(None)}:
            out.append((k, None if a is missing else a, None if b is missing else b))
    return out


def _check(cfg: StudyConfig, path: str) -> None:
    """Each section's own checks, then those across sections; the first mistake raises."""
    def fail(field_name: str, message: str) -> None:
        raise ConfigError(path, field_name, message)

    if not cfg.name.strip():
        fail("name", "must not be empty")
    check_dataset(cfg.dataset, fail)
    check_teacher(cfg.teacher, fail)
    check_student(cfg.student, fail)
    check_distillation(cfg, fail)
    check_recipe("training", cfg.training, fail)
    check_transfer(cfg.transfer, "transfer", fail)
    check_search(cfg, fail)
    check_objectives(cfg, fail)
    check_deploy(cfg, fail)
    check_confirm(cfg, fail)
    check_methods(cfg, fail)


def check_classes(cfg: StudyConfig, num_classes: int) -> None:
    """The transfer sections against the dataset's classes (once its class count is known)."""
    def fail(field_name: str, message: str) -> None:
        raise ConfigError(cfg.source, field_name, message)

    check_transfer(cfg.transfer, "transfer", fail, num_classes)
    for i, arm in enumerate(cfg.confirm.arms or []):
        if arm.transfer is not None:
            check_transfer(arm.transfer, f"confirm.arms[{i}].transfer", fail, num_classes)


def parse(data: Any, path: str = "<dict>") -> StudyConfig:
    """Validate a mapping (as read from YAML) into a `StudyConfig`."""
    raw = data.get("dataset") if isinstance(data, dict) else None
    given = [k for k in ("name", "folder", "arrays") if isinstance(raw, dict) and raw.get(k) is not None]
    if len(given) > 1:  # `name` has a default, so only the file says whether it was given too
        raise ConfigError(path, f"dataset.{given[-1]}", "give exactly one of dataset.name, dataset.folder and "
                                                        f"dataset.arrays (got {', '.join(given)})")
    cfg = build(StudyConfig, data, "", path)
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
