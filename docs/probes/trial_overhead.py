"""cProfile of 12 short MLP trials (trial_overhead.yaml, 6,000 images) and the clock's median
seconds per trial outside training, by part. From the checkout:
`.venv/bin/python docs/probes/trial_overhead.py` (profile in /tmp/trial_overhead.prof; about 1 minute)."""
import cProfile
import json
import os
import pstats
import shutil

import yaml

from harness import config, study
from harness.logs import configure_logging
from harness.training.clock import overhead
configure_logging(prefix="p")
os.chdir(os.path.dirname(os.path.abspath(__file__)))
cfg = config.load("trial_overhead.yaml")
wd = "/tmp/trial_overhead_wd"
shutil.rmtree(wd, ignore_errors=True)
os.mkdir(wd)
warm = {**yaml.safe_load(open("trial_overhead.yaml")), "n_trials": 1, "name": "warm"}
study.run(config.parse(warm, "warm"), wd, export=False)  # teacher trained and cached outside the profile
pr = cProfile.Profile()
pr.enable()
r = study.run(cfg, wd, export=False)
pr.disable()
print(json.dumps(overhead(r.trial_times), indent=0))
pstats.Stats(pr).sort_stats("cumulative").dump_stats("/tmp/trial_overhead.prof")
