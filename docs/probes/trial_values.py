"""`trial_overhead.yaml`'s 12 trials without a profiler: every trial value and twin accuracy (to compare
two commits digit for digit) and the median overhead per trial by part, written as JSON.
From a checkout (run it in each commit's checkout, one right after the other, and compare the files):
`PYTHONPATH=. .venv/bin/python docs/probes/trial_values.py /tmp/wd out.json` (about 1 minute)."""
import json, os, shutil, sys
import yaml
from harness import config, study
from harness.logs import configure_logging
from harness.training.clock import overhead
configure_logging(prefix="v")
raw = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "trial_overhead.yaml")))
wd = sys.argv[1]; shutil.rmtree(wd, ignore_errors=True); os.makedirs(wd)
study.run(config.parse({**raw, "n_trials": 1, "name": "warm"}, "warm"), wd, export=False)
r = study.run(config.parse(raw, "prof"), wd, export=False)
out = {"values": [t.values for t in r.study.trials],
       "twins": [t.user_attrs.get("baseline_val_accuracy") for t in r.study.trials],
       "overhead": overhead(r.trial_times)}
json.dump(out, open(sys.argv[2], "w"), indent=0)
print(json.dumps(out["overhead"]))
