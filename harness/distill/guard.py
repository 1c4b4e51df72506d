"""The divergence guard of every training run: a non-finite training loss stops the fit.

With `steps_per_execution` N the loss is seen once per compiled call of N
batches, so the reason says what is known: the range of batches of the call in
which it appeared, clipped to the epoch, and how often the check runs.
"""

from __future__ import annotations

import math

import keras


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def divergence_reason(loss: float, epoch: int, first: int, last: int, batches_per_epoch: int | None,
                      setting: str | None = "training.steps_per_execution") -> str:
    """What is known when the check sees a non-finite loss after the compiled call that ran batches
    `first`..`last` (0-based, as Keras numbers them) of `epoch` (0-based; said 1-based).

    With `steps_per_execution` N > 1 the loss is seen once per N batches, so the batch is known only
    to lie in that call's range, clipped to the epoch's `batches_per_epoch` when known (Keras
    numbers a short last call as if it were full). With N = 1 the batch is exact. `setting`: the
    study-file field that sets N, named in the reason (None: no field sets it, the teacher's case).
    """
    every = last - first + 1
    if batches_per_epoch:
        last = min(last, batches_per_epoch - 1)
    if every == 1:
        return f"training loss became {loss} at batch {first} of epoch {epoch + 1}"
    return (f"training loss became {loss} within batches {first}-{last} of epoch {epoch + 1}; "
            f"the check runs every {every} batches" + (f" ({setting})" if setting else ""))


class DivergenceGuard(keras.callbacks.Callback):
    """Stops a fit (a student's, a twin's, the teacher's) at the first non-finite training loss it
    sees: after the compiled call (`steps_per_execution` batches) in which it appeared, not an epoch
    later. Raises `Diverged` with `divergence_reason`'s text."""

    epoch, first = 0, 0

    def __init__(self, setting: str | None = "training.steps_per_execution"):
        super().__init__()
        self.setting = setting

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.first = batch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise Diverged(divergence_reason(loss, self.epoch, self.first, batch, (self.params or {}).get("steps"),
                                             self.setting))
