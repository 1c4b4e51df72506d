"""How much of the machine a bench part did not have: CPU time stolen by other guests of the
hypervisor, and CPU time used by other processes on this machine, over the part's wall time.

The same bench on the same 2-core host took 0.46 s and then 0.72 s for one CNN epoch an hour apart,
and its test suite 408 s one day and 539 s the next (docs/performance.md). On these virtual machines
`vmstat` showed up to 17% of the CPU stolen in a 2 s window while a lone CNN student trained, and
the epochs of a process that ran through such a window were the slow ones. So each part of
`harness bench` now says what it shared the machine with, and a figure can be read as idle or not
from its own JSON instead of from a note.

Linux only: `/proc/stat`'s first line (`cpu`, in clock ticks summed over every CPU: user, nice,
system, idle, iowait, irq, softirq, steal, ...; proc(5)). Elsewhere the figures are None.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

STAT = Path("/proc/stat")


def cpu_ticks(stat: Path = STAT) -> list[int] | None:
    """The `cpu` line of /proc/stat as integers (clock ticks over every CPU), or None off Linux."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(v) for v in first[1:]] if first and first[0] == "cpu" else None


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for (a spawned bench
    child counts once it has exited)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def figures(before: list[int] | None, after: list[int] | None, own_seconds: float,
            ticks_per_second: float) -> dict:
    """{steal_pct, others_pct, own_pct}: of the CPU time the machine's CPUs had between two
    `cpu_ticks` readings (all CPUs together, steal included), the share stolen by other guests, the
    share busy in processes other than this one and its children, and this one's with its children
    (`own_seconds`). Percent, 0-100; None without readings. The busy time here counts user, nice,
    system, irq and softirq."""
    if before is None or after is None:
        return {"steal_pct": None, "others_pct": None, "own_pct": None}
    d = [a - b for a, b in zip(after, before)]
    d += [0] * (8 - len(d))
    user, nice, system, idle, iowait, irq, softirq, steal = d[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    if total <= 0:
        return {"steal_pct": 0.0, "others_pct": 0.0, "own_pct": 0.0}
    busy_seconds = (user + nice + system + irq + softirq) / ticks_per_second
    others = max(0.0, busy_seconds - own_seconds) * ticks_per_second
    return {"steal_pct": round(100 * steal / total, 2), "others_pct": round(100 * others / total, 2),
            "own_pct": round(min(100.0, 100 * own_seconds * ticks_per_second / total), 2)}


@contextmanager
def measured(into: dict):
    """Fill `into` with `figures` (and `wall_s`) for the code run inside the block."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, own0, t0 = cpu_ticks(), own_cpu_seconds(), time.perf_counter()
    try:
        yield into
    finally:
        into.update(figures(before, cpu_ticks(), own_cpu_seconds() - own0, ticks),
                    wall_s=round(time.perf_counter() - t0, 2))


def format_contention(parts: dict) -> str:
    """One line: each part's stolen and others' shares of the CPU."""
    shown = [f"{name} {f['steal_pct']:.1f}% stolen, {f['others_pct']:.1f}% other processes"
             for name, f in parts.items() if f.get("steal_pct") is not None]
    return ("shared CPU (of all cores over each part's wall time): " + "; ".join(shown)) if shown else \
        "shared CPU: not measured (no /proc/stat)"
