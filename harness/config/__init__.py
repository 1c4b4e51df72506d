"""A study file (YAML) read into a typed, validated `StudyConfig`, one section a module: `data`
(dataset, transfer), `teacher`, `student`, `training`, `methods` (distillation and each method's own
parameters), `search` (with the objectives, pruner and heartbeat), `confirm`, `deploy` (champion,
exports); `study` holds `StudyConfig`, its fingerprint and the loading, `parsing` the typed builder,
`errors` the user's mistakes. Every mistake becomes one `ConfigError` line that names the file, the
field and what is allowed, so the command line can exit with code 2 before anything is written to a
store. The public names are re-exported here: `from harness.config import StudyConfig, ConfigError`.

Imports nothing of the harness outside this folder (a base module) but the method registry
(distill/methods/, whose import starts no TensorFlow): each method's sections are its class's.
"""

from harness.config.confirm import ArmConfig, ConfirmConfig
from harness.config.data import DatasetConfig, TransferConfig
from harness.config.deploy import CHAMPION_RULES, EXPORT_FORMATS, ChampionConfig
from harness.config.errors import ConfigError, UserError
from harness.config.methods import TEACHER_MODES, DistillationConfig, MethodSpace, ViewsConfig
from harness.config.ranges import EpochSpace, FloatRange, WidthSpace
from harness.config.search import OBJECTIVES, PRUNERS, HeartbeatConfig, PrunerConfig, SearchConfig, widths_searched
from harness.config.student import FAMILIES, STUDENT_FAMILIES, AugmentConfig, StudentConfig
from harness.config.study import (FINGERPRINT_SECTIONS, FINGERPRINT_SPEED_ONLY, StudyConfig, check_classes,
                                  fingerprint_differences, load, parse, study_fingerprint)
from harness.config.teacher import TEACHER_OUTPUTS, TeacherConfig, TeacherInputConfig
from harness.config.training import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainingConfig

__all__ = [
    "ArmConfig", "AugmentConfig", "CHAMPION_RULES", "ChampionConfig", "ConfigError", "ConfirmConfig",
    "DatasetConfig", "DistillationConfig", "EXPORT_FORMATS", "EpochSpace", "FAMILIES",
    "FINGERPRINT_SECTIONS", "FINGERPRINT_SPEED_ONLY", "FloatRange", "HeartbeatConfig",
    "MethodSpace", "OBJECTIVES", "OPTIMIZERS", "PRECISIONS", "PRUNERS", "PrunerConfig",
    "SCHEDULES", "STUDENT_FAMILIES", "SearchConfig", "StudentConfig", "StudyConfig", "TEACHER_MODES",
    "TEACHER_OUTPUTS", "TeacherConfig", "ViewsConfig",
    "TeacherInputConfig", "TrainingConfig", "TransferConfig", "UserError", "WidthSpace", "check_classes",
    "fingerprint_differences", "load", "parse", "study_fingerprint", "widths_searched",
]
