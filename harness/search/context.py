"""`Context`: what every training run of one process shares (data, teacher, pipelines, runs).

Built once per process, after the data and the teacher: every trial, scratch
twin and confirmation run starts from its arrays and the teacher's cached
logits instead of rebuilding them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import keras
import mlflow
import numpy as np
import tensorflow as tf

from harness import tracking
from harness.config import ArmConfig, AugmentConfig, StudyConfig
from harness.data import pipelines, sources, transfer_set
from harness.data.evaluate import ensemble_logits, ensemble_probabilities
from harness.distill import precision
from harness.distill.compiled import Compiled
from harness.distill.models import build_student, flops_per_example
from harness.search.clock import TrialClock
from harness.search.stores import Workspace
from harness.teacher.trained import Teacher, resolve_jit


@dataclass
class Context:
    cfg: StudyConfig
    ws: Workspace
    splits: sources.Splits
    teacher: Teacher
    experiment_id: str
    parent_run_id: str
    transfer: tf.data.Dataset = field(init=False)  # (image, {labels, teacher_logits}) examples
    student_transfer: sources.Split = field(init=False)  # the part of the transfer set the students see
    val_ds: tf.data.Dataset = field(init=False)
    jit: bool = field(init=False)
    precision: str = field(init=False)  # resolved: float32 or bfloat16 (see precision.py)
    fit_seconds: float = 0.0  # time spent inside students' `fit` (the bench's overhead figure)
    compiled: Compiled = field(default_factory=Compiled)
    clock: TrialClock = field(default_factory=TrialClock)  # where each trial's time goes (clock.py)
    train_flops: float = 0.0  # training FLOPs of every student fit in this context

    def __post_init__(self):
        tr, st = self.cfg.training, self.cfg.student
        # The teacher learned from (and has logits for) the whole transfer split; the students see
        # the part `transfer:` keeps, each example with its own cached logits.
        keep = transfer_set.transfer_positions(self.splits.transfer.labels, self.cfg.transfer, self.cfg.seed)
        t = self.student_transfer = transfer_set.subset(self.splits.transfer, keep)
        logits = self.teacher.transfer_logits[keep].astype(np.float32)
        self.transfer = tf.data.Dataset.from_tensor_slices((t.images, {"labels": t.labels, "teacher_logits": logits}))
        self.val_ds = pipelines.pipeline(self.splits.validation.images, self.splits.validation.labels, 1024)
        self.jit = resolve_jit(tr.jit_compile, st.family, st.dropout, st.input_dropout)
        self.precision = precision.resolved(self.cfg)
        if self.online and tr.jit_compile is None:  # the teacher runs in the step too
            tc = self.cfg.teacher
            self.jit = self.jit and resolve_jit(None, tc.family)

    def for_arm(self, arm: ArmConfig) -> "Context":
        """The same data and teacher, with this arm's teacher mode, jitter, transfer set and epochs:
        its students, and its scratch twins (whose key holds all four), train as the arm says. An
        arm that asks for the file's own settings is this context, with its pipelines and compiled
        models."""
        c = self.cfg
        cfg = dataclasses.replace(
            c, distillation=dataclasses.replace(c.distillation, teacher=arm.teacher),
            student=dataclasses.replace(c.student, augment=AugmentConfig(jitter=arm.jitter)),
            transfer=arm.transfer or c.transfer,
            training=dataclasses.replace(c.training, epochs=arm.epochs or c.training.epochs))
        if cfg == c:
            return self
        return Context(cfg, self.ws, self.splits, self.teacher, self.experiment_id, self.parent_run_id)

    @property
    def transfer_examples(self) -> int:
        """How many examples the students train on (the `transfer_examples` metric)."""
        return len(self.student_transfer)

    @property
    def omitted(self) -> list[int]:
        """Classes the students never see (their bias is corrected after training)."""
        return list(self.cfg.transfer.omit_classes or [])

    def log_transfer(self) -> None:
        """The transfer set of the active run's student: params and the `transfer_examples` metric."""
        mlflow.log_params(self.cfg.transfer.to_params())
        mlflow.log_metric("transfer_examples", self.transfer_examples)

    def compile_key(self, kind: str, width: int, recipe, method: str = "kd") -> str:
        """What a compiled training graph depends on, beyond the study file's student section
        (the distillation method's name when not kd: each method's step is its own graph)."""
        return Compiled.key(kind=kind, width=width, recipe=recipe.to_dict(), examples=self.transfer_examples,
                            online=self.online and kind == "distilled", jit=self.jit,
                            steps_per_execution=self.cfg.training.steps_per_execution,
                            **precision.key_part(self.precision), **({} if method == "kd" else {"method": method}))

    def count_training(self, student: keras.Model, epochs: int, teacher_forward: bool = False) -> None:
        """Add a fit's training FLOPs: 3x the student's forward pass (forward, two backward
        products) per example and epoch, plus the teacher's forward pass when it ran in the step."""
        per_example = 3 * flops_per_example(student) + (self.teacher.flops if teacher_forward else 0)
        self.train_flops += float(per_example) * self.transfer_examples * epochs

    def start_run(self, role: str, name: str, tags: dict | None = None):
        """A run nested under this invocation's parent run."""
        return tracking.start(role, name, parent_run_id=self.parent_run_id,
                              experiment_id=self.experiment_id, tags=tags)

    def inputs(self, width: int, seed: int, distilled: bool = True) -> tuple[keras.Model, tf.data.Dataset]:
        """A fresh student and its transfer batches, both drawn from `seed` alone.

        A distilled student and its scratch twin at the same seed start from
        the same weights and see the same batches in the same order, with the
        same jitter: they differ in the loss alone, so their difference is a
        paired measurement. Batches carry the cached teacher logits only for a
        distilled student with a cached teacher.
        """
        keras.utils.set_random_seed(seed)
        student = build_student(self.cfg.student, width, self.splits.image_shape, self.splits.num_classes,
                                seed=seed, dtype=precision.policy(self.precision))
        ds = pipelines.batches(self.transfer, self.cfg.training.batch_size, shuffle_seed=seed,
                              max_shift=self.cfg.student.augment.jitter)
        return student, ds if distilled and not self.online else pipelines.labels_only(ds)

    @property
    def online(self) -> bool:
        """The teacher runs in the step, on the student's own batch (`distillation.teacher: online`)."""
        return self.cfg.distillation.teacher == "online"

    @cached_property
    def datasets(self) -> list[tuple]:
        """The splits as MLflow dataset inputs, digested once per process."""
        return tracking.datasets(self.splits)

    @cached_property
    def teacher_test_probs(self) -> np.ndarray:
        """The teacher's prediction on the test split (fidelity is measured against it)."""
        return ensemble_probabilities(ensemble_logits(self.teacher.members, self.splits.test.images))

    @cached_property
    def teacher_omitted_accuracy(self) -> float | None:
        """The teacher's test accuracy on the classes the students never see (None: none omitted)."""
        if not self.omitted:
            return None
        mask = np.isin(self.splits.test.labels, self.omitted)
        return float(np.mean(self.teacher_test_probs[mask].argmax(-1) == self.splits.test.labels[mask]))
