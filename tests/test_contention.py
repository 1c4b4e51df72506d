"""What a bench part or a study shared the machine with (`training/contention.py`): /proc/stat read
around the work, the work's own CPU told apart from other processes' and from other guests'."""

def test_contention_is_the_stolen_and_the_other_processes_share_of_the_cpu():
    from harness.training import contention

    # two CPUs for 1 s at 100 ticks/s, 200 ticks: user 80, system 10, idle 60, stolen 50; this process 0.3 s
    before = [1000, 0, 500, 4000, 0, 0, 0, 100]
    after = [1020 + 60, 0, 510, 4000 + 60, 0, 0, 0, 150]
    f = contention.figures(before, after, own_seconds=0.3, ticks_per_second=100)
    assert f == {"steal_pct": 25.0, "others_pct": 30.0, "own_pct": 15.0}  # 90 busy - 30 own = 60 ticks of 200
    assert contention.figures(None, after, 0.0, 100) == {"steal_pct": None, "others_pct": None, "own_pct": None}


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
    cores = os.cpu_count()  # /proc/stat's `cpu` line sums every CPU of the machine
    assert alone["own_pct"] >= 100 * 1.5 / (alone["wall_s"] * cores) - 5 and alone["wall_s"] >= 1.5, (beside, alone)
    assert "stolen" in contention.format_contention({"pairs": beside})
