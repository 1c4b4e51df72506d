"""How much of the machine a piece of work did not have: CPU time stolen by other guests of the
hypervisor, and CPU time used by other processes on this machine, over the work's wall time.

The same bench on the same 2-core host took 0.46 s and then 0.72 s for one CNN epoch an hour apart,
and its test suite 408 s one day and 539 s the next (docs/performance.md). On these virtual machines
one CNN student's epoch took 1.14 s with 1% of the CPU stolen and 2.21 s with 19%, ten minutes
apart (`docs/probes/lone_epochs_steal.py`). So each part of `harness bench`, each study (its
parent run's `cpu_steal_pct` and `cpu_others_pct`, and its closing line) and each trial's run say
what they shared the machine with: a wall time can be read as idle or not from its own record.

The readings are psutil's (`psutil.cpu_times()`: seconds summed over every CPU, from /proc/stat
on Linux; `steal` exists on Linux only, so elsewhere the figures are None).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import psutil

BUSY = ("user", "nice", "system", "irq", "softirq")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for (a spawned bench
    child counts once it has exited)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def figures(before, after, own_seconds: float) -> dict:
    """{steal_pct, others_pct, own_pct}: of the CPU time the machine's CPUs had between two
    `psutil.cpu_times()` readings (all CPUs together, steal included), the share stolen by other
    guests, the share busy in processes other than this one and its children, and this one's with
    its children (`own_seconds`). Percent, 0-100; None without a steal reading. The busy time here
    counts user, nice, system, irq and softirq."""
    if getattr(before, "steal", None) is None or getattr(after, "steal", None) is None:
        return {"steal_pct": None, "others_pct": None, "own_pct": None}
    d = {k: getattr(after, k) - getattr(before, k) for k in after._fields}
    total = sum(d.values()) - d.get("guest", 0) - d.get("guest_nice", 0)  # guest time is inside user and nice
    if total <= 0:
        return {"steal_pct": 0.0, "others_pct": 0.0, "own_pct": 0.0}
    others = max(0.0, sum(d.get(k, 0) for k in BUSY) - own_seconds)
    return {"steal_pct": round(100 * d["steal"] / total, 2), "others_pct": round(100 * others / total, 2),
            "own_pct": round(min(100.0, 100 * own_seconds / total), 2)}


class Meter:
    """Started when made; `read()` gives `figures` and `wall_s` since then (it can be read again)."""

    def __init__(self):
        self.before, self.own0, self.t0 = psutil.cpu_times(), own_cpu_seconds(), time.perf_counter()

    def read(self) -> dict:
        return {**figures(self.before, psutil.cpu_times(), own_cpu_seconds() - self.own0),
                "wall_s": round(time.perf_counter() - self.t0, 2)}


@contextmanager
def measured(into: dict):
    """Fill `into` with a `Meter`'s reading for the code run inside the block."""
    meter = Meter()
    try:
        yield into
    finally:
        into.update(meter.read())


def as_metrics(f: dict, keys=("steal_pct", "others_pct", "own_pct")) -> dict:
    """A reading's shares as MLflow metrics (`cpu_steal_pct`, ...), those measured only."""
    return {f"cpu_{k}": f[k] for k in keys if f.get(k) is not None}


def describe(f: dict) -> str:
    """'3.6% of the CPU stolen by other guests, 0.0% used by other processes', or '' without figures."""
    if f.get("steal_pct") is None:
        return ""
    return f"{f['steal_pct']:.1f}% of the CPU stolen by other guests, {f['others_pct']:.1f}% used by other processes"


def format_contention(parts: dict) -> str:
    """One line: each part's stolen and others' shares of the CPU."""
    shown = [f"{name} {f['steal_pct']:.1f}% stolen, {f['others_pct']:.1f}% other processes"
             for name, f in parts.items() if f.get("steal_pct") is not None]
    return ("shared CPU (of all cores over each part's wall time): " + "; ".join(shown)) if shown else \
        "shared CPU: not measured (psutil gives no steal time here)"
