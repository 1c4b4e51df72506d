"""SQLite's journal for the two stores: the default against WAL with synchronous=NORMAL. Times an
Optuna user attribute (100 in a row) and an MLflow run's requests (create, 4 log_batch, terminate;
median of 10), twice each, in a temporary folder.
From the checkout: `.venv/bin/python docs/probes/sqlite_wal.py` (about 20 seconds)."""
import logging
import sqlite3
import tempfile
import time
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from sqlalchemy import Engine, event

logging.disable(logging.WARNING)
optuna.logging.set_verbosity(logging.WARNING)
folder = Path(tempfile.mkdtemp())
normal = {"on": False}


@event.listens_for(Engine, "connect")
def _pragma(dbapi, _record):
    if normal["on"] and isinstance(dbapi, sqlite3.Connection):
        dbapi.execute("PRAGMA synchronous=NORMAL")


def database(mode: str, i: int) -> str:
    path = folder / f"{mode}-{i}.db"
    normal["on"] = mode == "wal"
    if mode == "wal":
        sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").connection.close()
    return f"sqlite:///{path}"


for i, mode in enumerate(("default", "wal", "default", "wal")):
    study = optuna.create_study(storage=database(mode, i), study_name="s")
    trial = study.ask()
    t0 = time.perf_counter()
    for k in range(100):
        trial.set_user_attr(f"k{k}", k)
    attr_ms = (time.perf_counter() - t0) * 10
    client = MlflowClient(database(mode, 10 + i))
    experiment = client.create_experiment("e")
    runs = []
    for _ in range(10):
        t0 = time.perf_counter()
        run_id = client.create_run(experiment).info.run_id
        client.log_batch(run_id, params=[Param(f"p{k}", str(k)) for k in range(20)], tags=[RunTag("a", "b")])
        for epoch in range(3):
            client.log_batch(run_id, metrics=[Metric(f"m{k}", 0.5, int(time.time() * 1000), epoch) for k in range(5)])
        client.set_terminated(run_id)
        runs.append(time.perf_counter() - t0)
    print(f"{mode}: Optuna user attribute {attr_ms:.2f} ms; MLflow run {sorted(runs)[5] * 1e3:.1f} ms", flush=True)
