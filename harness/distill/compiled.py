"""Models compiled once per shape and recipe, re-armed for every run that shares them.

Tracing and XLA-compiling a Keras train step costs about 4 s on a 2-core
machine (1.8 s without XLA; measured on a 2x16 MLP, where 2 epochs over 2,700
images then take 0.1 s), and every trial, scratch twin and confirmation run
paid it again for a model of a shape already compiled. Here a run whose key
(what the compiled graph depends on: width, loss kind, recipe, steps per
epoch, teacher mode, XLA) matches an earlier run's takes that run's compiled
model and re-arms it: every student variable (weights, and the dropout layers'
seed states) is overwritten with a fresh student's built from the new seed
(or with the values kept from an earlier build at the same width and seed),
and every optimizer variable is put back to its value before the first step.
So the run computes what a fresh build would; `tests/test_compiled.py`
compares the two bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Hashable

import keras
import numpy as np


@dataclass
class _Entry:
    model: keras.Model  # what `fit` is called on: a Distiller, or the student itself
    student: keras.Model
    optimizer_start: list[np.ndarray]


class Compiled:
    """One process's compiled models, by key. `hits` counts the compilations saved."""

    def __init__(self):
        self._entries: dict[str, _Entry] = {}
        self._starts: dict[Hashable, list[np.ndarray]] = {}  # a fresh student's values, by start
        self.hits = 0

    @staticmethod
    def key(**parts) -> str:
        return json.dumps(parts, sort_keys=True, default=str)

    def get(self, key: str, fresh: keras.Model | Callable[[], keras.Model],
            compile_fn: Callable[[keras.Model], keras.Model], start: Hashable | None = None):
        """(model, student): compiled for `key`, holding a fresh student's variables and a new optimizer state.

        `fresh`: the fresh student, or a function that builds it (called only when its values are
        not known yet). `compile_fn(student)` returns the compiled model around `student` on a
        key's first use; later uses return that model, with the fresh values copied in.
        `start`: what the fresh student's values depend on (a context's width and seed); they are
        kept, so a later run from the same start re-arms without building a student (a Keras
        functional model): build + compile fell from 48 to 25 ms a trial in a 12-trial study
        (docs/performance.md), whose trials share one seed.
        """
        e = self._entries.get(key)
        values = self._starts.get(start) if start is not None else None
        if e is None or values is None:
            fresh = fresh() if callable(fresh) and not isinstance(fresh, keras.Model) else fresh
            values = [v.numpy() for v in fresh.variables]
            if start is not None:
                self._starts[start] = values
        if e is None:
            model = compile_fn(fresh)
            model.optimizer.build(model.trainable_variables)
            self._entries[key] = _Entry(model, fresh, [v.numpy() for v in model.optimizer.variables])
            return model, fresh
        if [v.shape for v in e.student.variables] != [tuple(v.shape) for v in values]:
            raise ValueError(f"compiled model {key} does not match the student built for it")
        for dst, src in zip(e.student.variables, values):
            dst.assign(src)
        for v, start_value in zip(e.model.optimizer.variables, e.optimizer_start):
            v.assign(start_value)
        self.hits += 1
        return e.model, e.student
