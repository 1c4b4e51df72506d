"""Learning-rate schedules by name, built from Keras' own schedules.

A constant learning rate leaves short runs under-trained: the last epochs
still take large steps, so the weights end noisy. Decaying to zero over the
run (cosine) settles them, and a short linear warm-up first keeps the early
large steps from upsetting batch-normalised or freshly initialised networks.
The schedules count optimizer steps (batches), so a run's `total_steps` is
`steps(examples, batch_size, epochs)`.

* constant: `base_lr` at every step (a plain float: no schedule object in the optimizer).
* cosine: `base_lr * 0.5 * (1 + cos(pi * step / total_steps))`, 0 at the end.
* linear_warmup_cosine: from 0 up to `base_lr` linearly over `warmup_steps`,
  then the cosine above over the remaining `total_steps - warmup_steps`.
"""

from __future__ import annotations

import math

import keras

SCHEDULES = ("constant", "cosine", "linear_warmup_cosine")


def steps(examples: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a run: batches per epoch (the last one partial) times epochs."""
    return math.ceil(examples / batch_size) * epochs


def learning_rate(name: str, base_lr: float, total_steps: int, warmup_steps: int = 0):
    """The optimizer's `learning_rate`: a float, or a `keras.optimizers.schedules` object."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}: use one of {', '.join(SCHEDULES)}")
    if name != "linear_warmup_cosine" and warmup_steps:
        raise ValueError(f"warm-up steps only apply to linear_warmup_cosine, not {name!r}")
    if name == "constant":
        return float(base_lr)
    if total_steps <= warmup_steps:
        raise ValueError(f"the run has {total_steps} steps, no more than its {warmup_steps} "
                         "warm-up steps: train longer or warm up less")
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(float(base_lr), decay_steps=total_steps)
    if warmup_steps <= 0:
        raise ValueError("linear_warmup_cosine needs warmup_steps > 0 (or use cosine)")
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total_steps - warmup_steps,
        warmup_target=float(base_lr), warmup_steps=warmup_steps)
