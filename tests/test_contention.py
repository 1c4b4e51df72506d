"""What a bench part or a study shared the machine with (`training/contention.py`): the CPU's times
read around the work, the work's own CPU told apart from other processes' and from other guests'."""


def test_contention_is_the_stolen_and_the_other_processes_share_of_the_cpu():
    import collections

    from harness.training import contention

    times = collections.namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
    # two CPUs for 1 s, 2.0 CPU-seconds: user 0.8 (0.1 of it a guest's), system 0.1, idle 0.6, stolen 0.5;
    # this process 0.3 s
    before = times(10.0, 0.0, 5.0, 40.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0)
    after = times(10.8, 0.0, 5.1, 40.6, 0.0, 0.0, 0.0, 1.5, 2.1, 0.0)
    f = contention.figures(before, after, own_seconds=0.3)
    assert f == {"steal_pct": 25.0, "others_pct": 30.0, "own_pct": 15.0}  # 0.9 busy - 0.3 own = 0.6 of 2.0
    no_steal = collections.namedtuple("scputimes", "user system idle")(1.0, 1.0, 1.0)  # psutil off Linux
    assert contention.figures(no_steal, no_steal, 0.0) == {"steal_pct": None, "others_pct": None, "own_pct": None}


def test_a_busy_process_beside_the_bench_shows_as_others_and_the_bench_itself_does_not():
    import os
    import subprocess
    import sys
    import time

    from harness.training import contention

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        with contention.measured(beside := {}):
            time.sleep(1.5)
    finally:
        busy.kill()
        busy.wait()
    with contention.measured(alone := {}):
        t0 = time.process_time()
        while time.process_time() - t0 < 1.5:
            pass
    # one of the two cores busy beside it: about 50% of the machine's CPU time, more if other tests run beside
    # (pytest's second worker); the block's own loop is its own, whatever else runs: 1.5 CPU-seconds
    assert beside["others_pct"] > 25 and beside["own_pct"] < 10, (beside, alone)
    cores = os.cpu_count()  # psutil.cpu_times() sums every CPU of the machine
    assert alone["own_pct"] >= 100 * 1.5 / (alone["wall_s"] * cores) - 5 and alone["wall_s"] >= 1.5, (beside, alone)
    assert "stolen" in contention.format_contention({"pairs": beside})
