"""`Context`: what every training run of one process shares (data, teacher, pipelines, runs).

Built once per process, after the data and the teacher: every trial, scratch twin and confirmation
run starts from its arrays and the teacher's cached logits instead of rebuilding them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property

import keras
import mlflow
import numpy as np
import tensorflow as tf

from harness import tracking
from harness.config import ArmConfig, AugmentConfig, StudyConfig, widths_searched
from harness.data import pipelines, sources, transfer_set, unlabeled, views
from harness.data.evaluate import ensemble_logits, ensemble_probabilities
from harness.distill import builder, methods, population, precision
from harness.distill.compiled import Compiled
from harness.distill.models import build_student, flops_per_example
from harness.teacher import unlabeled as unlabeled_logits, views as view_cache
from harness.teacher.trained import Teacher, resolve_jit
from harness.training.clock import TrialClock
from harness.training.validation import Forward, Validation
from harness.training.workspace import Workspace


def arm_config(c: StudyConfig, arm: ArmConfig) -> StudyConfig:
    """The study as one confirmation arm trains it: the arm's teacher mode, jitter, transfer set
    and epochs in place of the file's (the arm's name is a label only; its method reaches the runs
    as their `Method`, methods.for_arm)."""
    return dataclasses.replace(
        c, distillation=dataclasses.replace(c.distillation, teacher=arm.teacher),
        student=dataclasses.replace(c.student, augment=AugmentConfig(jitter=arm.jitter)),
        transfer=arm.transfer or c.transfer,
        training=dataclasses.replace(c.training, epochs=arm.epochs or c.training.epochs))


@dataclass
class Context:
    cfg: StudyConfig
    ws: Workspace
    splits: sources.Splits
    teacher: Teacher
    experiment_id: str
    parent_run_id: str
    transfer: tf.data.Dataset = field(init=False)  # (image, {labels, teacher_logits}) examples
    # The distilled students' examples: `transfer`, plus the unlabeled images (label -1) when the
    # transfer section gives some (`transfer` itself otherwise). Scratch twins never see them.
    distill_transfer: tf.data.Dataset = field(init=False)
    unlabeled_examples: int = field(init=False, default=0)
    unlabeled_digest: str | None = field(init=False, default=None)  # of every unlabeled image
    student_transfer: sources.Split = field(init=False)  # the part of the transfer set the students see
    val_images: tf.Tensor = field(init=False)  # float32 [n, h, w, c], 0-255: validation, built once
    forward: Forward = field(default_factory=Forward)  # one traced forward pass per student (validation.py)
    jit: bool = field(init=False)
    precision: str = field(init=False)  # resolved: float32 or bfloat16 (see precision.py)
    fit_seconds: float = 0.0  # time spent inside students' `fit` (the bench's overhead figure)
    compiled: Compiled = field(default_factory=Compiled)
    clock: TrialClock = field(default_factory=TrialClock)  # where each trial's time goes (clock.py)
    train_flops: float = 0.0  # training FLOPs of every student fit in this context
    # Runs a population trained already (confirm/population.py), by `run_key`: (student, history),
    # taken by the run that would otherwise train it.
    pretrained: dict = field(default_factory=dict)
    keep: np.ndarray = field(init=False)  # the students' examples: positions in the transfer split

    def __post_init__(self):
        tr, st = self.cfg.training, self.cfg.student
        # The teacher learned from (and has logits for) the whole transfer split; the students see
        # the part `transfer:` keeps, each example with its own cached logits.
        keep = self.keep = transfer_set.transfer_positions(self.splits.transfer.labels, self.cfg.transfer,
                                                           self.cfg.seed)
        t = self.student_transfer = transfer_set.subset(self.splits.transfer, keep)
        logits = self.teacher.transfer_logits[keep].astype(np.float32)
        self.transfer = tf.data.Dataset.from_tensor_slices((t.images, {"labels": t.labels, "teacher_logits": logits}))
        self.distill_transfer = self.transfer
        extra = self._unlabeled(keep)
        if extra is not None:
            images, extra_logits = extra
            self.unlabeled_examples, self.unlabeled_digest = len(images), unlabeled.digest(images)
            self.distill_transfer = tf.data.Dataset.from_tensor_slices((
                np.concatenate([t.images, images]),
                {"labels": np.concatenate([t.labels, np.full(len(images), -1, t.labels.dtype)]),
                 "teacher_logits": np.concatenate([logits, extra_logits])}))
        self.val_images = self.forward.held(self.splits.validation.images)  # shared with the depth variants
        # A user's builder may hold anything: treated as the family XLA suits least on a CPU (a cnn's).
        self.jit = resolve_jit(tr.jit_compile, "cnn" if st.builder or st.family != "mlp" else st.family,
                               st.dropout, st.input_dropout)
        self.precision = precision.resolved(self.cfg)
        if self.online and tr.jit_compile is None:  # the teacher runs in the step too
            tc = self.cfg.teacher
            self.jit = self.jit and resolve_jit(None, tc.family)

    def _unlabeled(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(images, teacher logits) of the transfer section's unlabeled images, or None: the rest of
        the transfer split (`unlabeled_rest`), then the file or folder (`unlabeled`)."""
        tc = self.cfg.transfer
        if not tc.has_unlabeled:
            return None
        rest = unlabeled.rest_positions(self.splits.transfer.labels, tc, keep)
        images = [self.splits.transfer.images[rest]]
        logits = [self.teacher.transfer_logits[rest].astype(np.float32)]
        extra = unlabeled.read(tc, self.cfg.source, self.splits.image_shape)
        if extra is not None:
            images.append(extra)
            logits.append(unlabeled_logits.logits(self.teacher, extra, unlabeled.digest(extra),
                                                   self.ws.teacher_cache))
        return np.concatenate(images), np.concatenate(logits)

    def validation(self, student: keras.Model, every_epoch: bool = True, batch_means: bool = True) -> Validation:
        """The callback that validates `student` at the end of every epoch (or of the last), before the
        callbacks that read `val_accuracy`."""
        return Validation(self.forward, self.val_images, self.splits.validation.labels, student=student,
                          every_epoch=every_epoch, batch_means=batch_means, clock=self.clock)

    @staticmethod
    def run_key(role: str, width: int, seed: int, recipe, temperature: float = 1.0, alpha: float = 1.0,
                method: str = methods.DEFAULT) -> tuple:
        """What identifies one run of this context: a distilled student (its loss: method, T, alpha)
        or a scratch twin."""
        return (role, width, seed, json.dumps(recipe.to_dict(), sort_keys=True), float(temperature), float(alpha),
                method)

    @staticmethod
    def log_history(history: dict) -> None:
        """A population member's per-epoch figures on its MLflow run, as MLflow's Keras callback
        logs a lone run's (validation figures: at the last epoch, where they were measured)."""
        if mlflow.active_run() is None:
            return
        tracking.log_curves(history)

    @cached_property
    def stackable(self) -> str | None:
        """None when this context's students can train as a population (distill/population.py),
        else why not (logged once by the confirmation)."""
        if self.online:
            return "the teacher runs in the step (distillation.teacher: online)"
        if self.unlabeled_examples:
            return "unlabeled images: the masked loss has no stacked form here"
        width = min(widths_searched(self.cfg))  # any width the search may train: the layers are what count
        fresh = build_student(self.cfg.student, width, self.splits.image_shape, self.splits.num_classes,
                              dtype=precision.policy(self.precision), source=self.cfg.source)
        return population.plan(fresh)[1]

    def together(self) -> bool:
        """Whether the confirmation trains this context's runs as populations."""
        return self.cfg.confirm.together and self.stackable is None

    def for_arm(self, arm: ArmConfig) -> "Context":
        """The same data and teacher, with this arm's teacher mode, jitter, transfer set and epochs:
        its students, and its scratch twins (whose key holds all four), train as the arm says. An
        arm that asks for the file's own settings is this context, with its pipelines and compiled
        models."""
        cfg = arm_config(self.cfg, arm)
        if cfg == self.cfg:
            return self
        return Context(cfg, self.ws, self.splits, self.teacher, self.experiment_id, self.parent_run_id)

    @property
    def transfer_examples(self) -> int:
        """How many examples the students train on (the `transfer_examples` metric)."""
        return len(self.student_transfer)

    @property
    def distill_examples(self) -> int:
        """How many examples a distilled student trains on: the labeled ones and the unlabeled."""
        return self.transfer_examples + self.unlabeled_examples

    @property
    def unlabeled_key(self) -> dict:
        """What a distilled student's cache key adds for its unlabeled images: their digest (their
        content, not their path); nothing without them, so a study without unlabeled images keys
        its runs as if the feature did not exist."""
        return {"unlabeled": self.unlabeled_digest} if self.unlabeled_examples else {}

    @property
    def omitted(self) -> list[int]:
        """Classes the students never see (their bias is corrected after training)."""
        return list(self.cfg.transfer.omit_classes or [])

    def log_transfer(self, params: dict | None = None, tags: dict | None = None, distilled: bool = True) -> None:
        """The transfer set of the active run's student (params and the `transfer_examples` metric, and
        the unlabeled images it learns from: a scratch twin, `distilled=False`, sees none, 0), with the
        caller's own `params` and `tags`, in one request (`tracking.log_run`)."""
        metrics = {"transfer_examples": self.transfer_examples}
        if self.unlabeled_examples:
            metrics["unlabeled_examples"] = self.unlabeled_examples if distilled else 0
        tracking.log_run(params={**(params or {}), **self.cfg.transfer.to_params()}, metrics=metrics, tags=tags)

    def compile_key(self, kind: str, width: int, recipe, method: str = methods.DEFAULT) -> str:
        """What a compiled training graph depends on, beyond the study file's student section (a
        user's builder is named in it, with its source file's SHA-256; the distillation method's
        name, and what shapes its graph, when not kd: `Method.graph_name`)."""
        distilled = kind == "distilled"
        extra = {"masked": True} if distilled and self.unlabeled_examples else {}
        if self.cfg.student.builder is not None:
            extra["builder"] = builder.identity(self.cfg.student.builder, self.cfg.source)
        if method != methods.DEFAULT:
            extra["method"] = method
        return Compiled.key(kind=kind, width=width, recipe=recipe.to_dict(),
                            examples=self.distill_examples if distilled else self.transfer_examples,
                            online=self.online and distilled, jit=self.jit,
                            steps_per_execution=self.cfg.training.steps_per_execution,
                            **precision.key_part(self.precision), **extra)

    def count_training(self, student: keras.Model, epochs: int, teacher_forward: bool = False,
                       distilled: bool = False) -> None:
        """Add a fit's training FLOPs: 3x the student's forward pass (forward, two backward
        products) per example and epoch, plus the teacher's forward pass when it ran in the step."""
        per_example = 3 * flops_per_example(student) + (self.teacher.flops if teacher_forward else 0)
        examples = self.distill_examples if distilled else self.transfer_examples
        self.train_flops += float(per_example) * examples * epochs

    def start_run(self, role: str, name: str, tags: dict | None = None):
        """A run nested under this invocation's parent run."""
        return tracking.start(role, name, parent_run_id=self.parent_run_id,
                              experiment_id=self.experiment_id, tags=tags)

    def inputs(self, width: int, seed: int, distilled: bool = True) -> tuple[keras.Model, tf.data.Dataset]:
        """A fresh student and its transfer batches, both drawn from `seed` alone.

        A distilled student and its scratch twin at one seed start from the same weights and see the
        same batches in the same order and jitter: they differ in the loss alone, a paired
        measurement. A distilled student's batches carry the cached teacher logits (with a cached
        teacher) and its unlabeled images (label -1); its initial weights are its twin's."""
        return self.fresh(width, seed), self.batches(seed, distilled)

    def fresh(self, width: int, seed: int) -> keras.Model:
        """The student at `width`, its initial weights drawn from `seed` alone."""
        keras.utils.set_random_seed(seed)
        return build_student(self.cfg.student, width, self.splits.image_shape, self.splits.num_classes,
                             seed=seed, dtype=precision.policy(self.precision), source=self.cfg.source)

    def batches(self, seed: int, distilled: bool = True) -> tf.data.Dataset:
        """A run's transfer batches (see `inputs`): explicit seeds, whether a student was built or not."""
        keras.utils.set_random_seed(seed)
        if self.views:  # one cached view per example and epoch, the same for the twin (data/views.py)
            ds = self._view_batches(seed, distilled)
        else:
            ds = pipelines.batches(self.distill_transfer if distilled else self.transfer,
                                   self.cfg.training.batch_size, shuffle_seed=seed,
                                   max_shift=self.cfg.student.augment.jitter)
        return ds if distilled and not self.online else pipelines.labels_only(ds)

    @cached_property
    def view_pool(self) -> tf.Tensor:
        """The transfer split's images (uint8 [N, h, w, c]) the views are built from."""
        return tf.constant(self.splits.transfer.images)

    @cached_property
    def view_logits(self) -> tf.Tensor:
        """`teacher: views`: the teacher's logits over every view of the transfer split (float32
        [V, N, ...]; teacher/views.py: cached, else computed in one pass), read when a run first needs them."""
        return tf.constant(view_cache.logits(self.teacher, self.splits.transfer.images,
                                             self.cfg.distillation.view_spec, self.cfg.seed, self.ws.teacher_cache))

    def _view_batches(self, seed: int, distilled: bool) -> tf.data.Dataset:
        """The run's view batches: its examples (with `unlabeled_rest`, a distilled run's include the
        rest, label -1) by their positions in the transfer split."""
        positions, labels = self.keep, self.student_transfer.labels
        rest = unlabeled.rest_positions(self.splits.transfer.labels, self.cfg.transfer, self.keep)
        if distilled and len(rest):
            positions = np.concatenate([positions, rest])
            labels = np.concatenate([labels, np.full(len(rest), -1, labels.dtype)])
        return views.batches(self.view_pool, positions, labels, self.view_logits, self.cfg.distillation.view_spec,
                             self.cfg.seed, self.cfg.training.batch_size, shuffle_seed=seed)

    @property
    def online(self) -> bool:
        """The teacher runs in the step, on the student's own batch (`distillation.teacher: online`)."""
        return self.cfg.distillation.teacher == "online"

    @property
    def views(self) -> bool:
        """Each run trains on cached views of the transfer images (`distillation.teacher: views`)."""
        return self.cfg.distillation.teacher == "views"

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
