"""The `training` section (the students' recipe and precision) and the recipe's checks, shared with
the teacher section."""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear_warmup_cosine")  # see schedules.py
PRECISIONS = ("float32", "bfloat16", "auto")  # see precision.py


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


def check_recipe(section: str, s, fail) -> None:
    """A recipe (the teacher's or the students'): schedule, warm-up, epochs, batch size, learning rate,
    optimizer; the students' steps per execution and precision."""
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
