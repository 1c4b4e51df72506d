"""The bench's two-objective study (`harness/bench/study.py`: 6 trials of 6 epochs over widths
128-512 on the full transfer set, then its confirmation), run in this process, with every trial's
overhead by part printed, not just the medians: which trials train a width's first twin, and what
that adds. From a checkout (rerun in each commit's checkout, one right after the other):
`PYTHONPATH=. .venv/bin/python docs/probes/bench_trial_parts.py /tmp/wd` (about 2.5 minutes)."""
import json, os, shutil, sys, time
from harness import study
from harness.bench import study as bench_study
from harness.logs import configure_logging
from harness.training.clock import PARTS, overhead
configure_logging(prefix="probe")
wd = sys.argv[1]; shutil.rmtree(wd, ignore_errors=True); os.makedirs(wd)
study.run(bench_study._cfg("bench_warmup", 1, 1, ["val_accuracy", "params"]), wd, export=False)
t0 = time.perf_counter()
r = study.run(bench_study._cfg("bench_pareto", 6, 6, ["val_accuracy", "params"]), wd)
print("study s %.1f" % (time.perf_counter() - t0))
for i, t in enumerate(r.trial_times):
    training = t.get("fit", 0) - t.get("validation", 0) - t.get("mlflow_epoch", 0)
    parts = {p: round(t[p], 3) for p in PARTS if t.get(p)}
    print(i, "overhead %.3f training %.2f" % (t["wall"] - training, training), parts)
print(json.dumps({k: round(v, 3) for k, v in overhead(r.trial_times).items()}))
