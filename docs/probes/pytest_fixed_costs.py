"""A pytest plugin that counts the suite's fixed costs in its test processes: TFDS decodes
(`tfds_data._decode`, `_read` before it held splits), new MLflow stores (`_initialize_tables`),
Optuna RDB storages, and the subprocesses tests and the harness start (with their seconds).

    rm -f /tmp/fixed_costs-*.txt
    PYTHONPATH=docs/probes .venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests \
        -p pytest_fixed_costs
    cat /tmp/fixed_costs-*.txt | awk -F'\t' '{n[$1]++; s[$1]+=$2} END {for (k in n) print k, n[k], s[k]}'

One line a call, `kind<TAB>seconds<TAB>test<TAB>what`, in /tmp/fixed_costs-PID.txt (one file a worker).
Stores and reads made inside a subprocess are not counted (they are inside its seconds).
"""
import functools
import os
import subprocess
import time

OUT = f"/tmp/fixed_costs-{os.getpid()}.txt"


def _log(kind, seconds, what=""):
    with open(OUT, "a") as f:
        f.write(f"{kind}\t{seconds:.3f}\t{os.environ.get('PYTEST_CURRENT_TEST', '')}\t{what}\n")


def _wrap(owner, name, kind, what=lambda a, k: ""):
    real = getattr(owner, name)

    @functools.wraps(real)
    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            _log(kind, time.perf_counter() - t0, what(a, k))

    setattr(owner, name, timed)


def pytest_configure(config):
    import mlflow.store.db.utils as db_utils
    import optuna.storages._rdb.storage as rdb

    from harness.data import tfds_data

    # MLflow's own set-up of a new store; since conftest's `_mlflow_tables_copied` only its template
    # store (one a test process) goes through it, so this counts the set-ups the copy saves only before it
    _wrap(db_utils, "_initialize_tables", "mlflow_new_store")
    _wrap(rdb.RDBStorage, "__init__", "optuna_storage")
    _wrap(tfds_data, "_decode" if hasattr(tfds_data, "_decode") else "_read", "tfds_decode",
          lambda a, k: str(a[1]))
    _wrap(subprocess, "run", "subprocess", lambda a, k: " ".join(map(str, (a[0] if a else k["args"])[:4]))[:200])
