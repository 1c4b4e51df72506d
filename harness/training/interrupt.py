"""Ctrl-C that closes the current trial cleanly and is never lost inside TensorFlow.

A KeyboardInterrupt raised while Keras runs a multi-step TensorFlow call was
seen to vanish (the epoch simply ended and the study went on), and one landing
inside MLflow's `end_run` left a run RUNNING. So while a trial runs, SIGINT
only sets a flag. `StopOnInterrupt` turns it into KeyboardInterrupt at the next
batch boundary of a `fit`, and `check()` does so at the trial's other safe
points. A trial that is past its training finishes, and the study stops after
it (`stop_study_if_requested`). Outside a trial, and on a second Ctrl-C, it is
the usual immediate KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import keras

_state = {"requested": False, "deferring": 0}


def _handler(signum, frame):
    if _state["deferring"] and not _state["requested"]:
        _state["requested"] = True
        return
    raise KeyboardInterrupt


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


@contextmanager
def deferred():
    """Within this block, Ctrl-C waits for a safe point."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


def check() -> None:
    """A safe point: raise the Ctrl-C that arrived meanwhile, if any."""
    if _state["requested"]:
        _state["requested"] = False
        raise KeyboardInterrupt


def stop_study_if_requested(study, trial) -> None:
    """Optuna callback: a trial that completed despite a Ctrl-C ends the study."""
    if _state["requested"]:
        study.stop()


class StopOnInterrupt(keras.callbacks.Callback):
    def _check(self, *args, **kwargs):
        check()

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check
