"""A process's own peak memory, for the bench's study part (which runs in a spawned child)."""

from __future__ import annotations

import resource
import sys


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: Linux's VmHWM (/proc/self/status), the high-water
    mark of its own address space since its exec. Not `getrusage`'s ru_maxrss, RUSAGE_SELF or
    RUSAGE_CHILDREN: Linux carries into it the parent's pages a spawned child held between its fork
    and its exec (a parent holding 3 GiB: ru_maxrss 3.03 GiB in a child whose VmHWM is 28 MB; `make
    bench`'s study child: 5.06 GiB against 2.86 alone). Elsewhere: ru_maxrss (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20  # kB
    except (OSError, StopIteration):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**30 if sys.platform == "darwin" else rss / 2**20
