"""The machine a bench ran on, written first in its JSON: figures from two hosts compare only as ratios.

Two hosts of one workplace differed by 2x in the float32 matmul rate (an AVX-512 Intel Xeon at
200-219 GFLOP/s, an AVX2-only AMD EPYC at 110-156), and TensorFlow leaves its oneDNN kernels off
on the second unless told (harness/__init__.py), so a bench names its CPU, its vector extensions
and whether oneDNN was on.
"""

from __future__ import annotations

import os
from pathlib import Path

EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{cpu: model name, cores: usable by this process, extensions: those of `EXTENSIONS` the CPU
    has, tensorflow: version, onednn: whether TensorFlow's oneDNN kernels are on}. Reads Linux's
    `/proc/cpuinfo`; elsewhere `cpu` is None and `extensions` empty."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    model, flags = None, set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "extensions": [e for e in EXTENSIONS if e in flags],
            "tensorflow": tf.__version__, "onednn": bool(_pywrap_util_port.IsMklEnabled())}


def format_host(host: dict) -> str:
    return (f"host: {host['cpu']}, {host['cores']} cores, {' '.join(host['extensions']) or 'no listed extensions'}; "
            f"TensorFlow {host['tensorflow']}, oneDNN {'on' if host['onednn'] else 'off'}")
