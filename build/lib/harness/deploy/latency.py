"""Single-image latency: many timed calls after a warm-up, on one thread, as percentiles.

Used twice: per trial (the float TFLite student, when `latency_ms` is an
objective) and per export (each deployed file, in the fresh process that
checks it). Only the median ranks students; p99 says how bad the tail is.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

WARMUP = 50
RUNS = 1000


def measure(call: Callable[[], object], warmup: int = WARMUP, runs: int = RUNS) -> dict[str, float]:
    """p50 and p99 of `call()`'s wall time in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    clock = time.perf_counter
    for i in range(runs):
        t0 = clock()
        call()
        times[i] = clock() - t0
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}


def tflite_ms(model: bytes, image: np.ndarray, warmup: int = WARMUP, runs: int = 300) -> float:
    """Median ms of one image through a TFLite model on one thread (what the search minimises)."""
    from harness.deploy.tflite import interpreter

    interp = interpreter(model_content=model)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *image.shape])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
    return measure(interp.invoke, warmup, runs)["p50_ms"]
