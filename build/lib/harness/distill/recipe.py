"""A run's training recipe: optimizer, learning rate and its schedule, epochs, batch size.

One recipe trains a distilled student and its scratch twin alike, so a gain
never compares two recipes. A trial's recipe is the file's `training` section,
overridden by what the trial suggested (`search.learning_rate`, `search.epochs`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras

from harness.distill import schedules
from harness.distill.distiller import make_optimizer


@dataclass(frozen=True)
class Recipe:
    optimizer: str
    learning_rate: float
    epochs: int
    batch_size: int
    schedule: str = "constant"
    warmup_epochs: int = 0

    @classmethod
    def of(cls, section, learning_rate: float | None = None, epochs: int | None = None) -> "Recipe":
        """From a `training` or `teacher` section, with a trial's suggestions on top."""
        return cls(section.optimizer, section.learning_rate if learning_rate is None else float(learning_rate),
                   section.epochs if epochs is None else int(epochs), section.batch_size, section.schedule,
                   section.warmup_epochs)

    def optimizer_for(self, examples: int) -> keras.optimizers.Optimizer:
        """A fresh optimizer whose schedule spans this run's steps over `examples`."""
        steps_per_epoch = schedules.steps(examples, self.batch_size, 1)
        lr = schedules.learning_rate(self.schedule, self.learning_rate, steps_per_epoch * self.epochs,
                                     warmup_steps=steps_per_epoch * self.warmup_epochs)
        return make_optimizer(self.optimizer, lr)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
