"""Ctrl-C that is never lost inside TensorFlow.

A KeyboardInterrupt raised while Keras runs a multi-step TensorFlow call was
seen to vanish (the epoch simply ended, the study went on). So while a
`fit` runs, SIGINT only sets a flag, and `StopOnInterrupt` raises
KeyboardInterrupt at the next batch boundary, from Python. Outside `fit`, and
on a second Ctrl-C, it is the usual immediate KeyboardInterrupt.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

import keras

_state = {"requested": False, "fitting": 0}


def _handler(signum, frame):
    if _state["fitting"] and not _state["requested"]:
        _state["requested"] = True
        return
    raise KeyboardInterrupt


def install() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


@contextmanager
def fitting():
    _state["fitting"] += 1
    try:
        yield
    finally:
        _state["fitting"] -= 1
        if _state["requested"] and not _state["fitting"]:
            _state["requested"] = False
            raise KeyboardInterrupt


class StopOnInterrupt(keras.callbacks.Callback):
    def _check(self, *args, **kwargs):
        if _state["requested"]:
            _state["requested"] = False
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check
