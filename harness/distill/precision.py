"""The compute precision of students, twins and teachers: `training.precision`.

`float32` is plain float32. `bfloat16` computes every layer in bfloat16 with
float32 variables (Keras' `mixed_bfloat16` policy, given to each layer of the
model, not set globally: two models of a process may differ, and nothing leaks
into code that builds models of its own). `auto` is bfloat16 where the hardware
does it natively, float32 elsewhere:

* a CPU whose /proc/cpuinfo flags name AVX512_BF16 or AMX (`amx_bf16`);
* a GPU of compute capability 8.0 or more (Ampere on).

float16 is not offered: it needs loss scaling, which the `Distiller`'s own
train step does not do. Whatever the precision, logits leave a model in float32
(`models.py` ends a bfloat16 model with a float32 cast), and the distillation
loss, the softmax at T and the metrics run in float32 (`losses.py`).

A precision is resolved once per process (`resolved`), and every cache key of
a model trained in bfloat16 holds it; a float32 key leaves it out, so float32
entries are shared by every study that trains in float32.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from harness.config import PRECISIONS as SETTINGS

log = logging.getLogger(__name__)

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text's `flags` name native bfloat16 (AVX512_BF16 or AMX)."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags" and any(f in value.split() for f in _CPU_FLAGS):
            return True
    return False


def _gpu_capabilities() -> list[tuple[int, int]]:
    import tensorflow as tf

    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cap = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        caps.append(tuple(cap) if cap else (0, 0))
    return caps


def resolve(setting: str, cpuinfo: str | None = None, gpus: list[tuple[int, int]] | None = None) -> str:
    """`float32` or `bfloat16` for a setting; `auto` decides from the hardware.

    `cpuinfo` (the text of /proc/cpuinfo) and `gpus` (compute capabilities) are
    read from this machine when not given; tests give them.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown precision {setting!r}; allowed: {', '.join(SETTINGS)}")
    if setting != "auto":
        return setting
    gpus = _gpu_capabilities() if gpus is None else gpus
    if gpus:  # the GPU computes; its capability decides
        return "bfloat16" if all(c >= (8, 0) for c in gpus) else "float32"
    if cpuinfo is None:
        p = Path("/proc/cpuinfo")
        cpuinfo = p.read_text() if p.exists() else ""
    return "bfloat16" if cpu_has_bf16(cpuinfo) else "float32"


@functools.lru_cache(maxsize=None)
def _resolved(setting: str) -> str:
    value = resolve(setting)
    if setting == "auto":
        log.info("precision: auto resolved to %s on this machine", value)
    return value


def resolved(cfg) -> str:
    """The study's precision on this machine (`cfg`: a StudyConfig), resolved once per process."""
    return _resolved(cfg.training.precision)


def policy(precision: str) -> str:
    """The Keras dtype policy of a resolved precision."""
    return POLICIES[precision]


def key_part(precision: str) -> dict:
    """What a cache key adds for a precision: nothing for float32 (the default needs no mark)."""
    return {} if precision == "float32" else {"precision": precision}
