"""MLflow bookkeeping: one experiment per study, nested runs, closing what a crash left open.

Every run the harness starts is tagged with its role (`study`, `teacher`,
`twin`, `trial`, `confirm`), the host and the process id. A later invocation on the
same host closes runs whose process is gone as KILLED, so the UI never shows
a crashed trial as still running.

A run's bookkeeping goes in few synchronous requests (`log_run`: params, metrics and tags in one
`MlflowClient.log_batch`; `EpochMetrics`: the per-epoch curves, batched; `log_datasets`: the three
dataset inputs in one `log_inputs`). Asynchronous logging looked cheaper per call, but ending a
run then waits for MLflow's queue to drain (up to its buffer interval, about 0.6 s a run measured
here), which cost more than the requests themselves.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import warnings
from pathlib import Path

import keras
import mlflow
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
ROLE = "harness.role"


def default_tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def internal_uri(uri: str) -> str:
    """SQLite waits up to 60 s for a lock instead of 5 s, for parallel workers."""
    if uri.startswith("sqlite:") and "?" not in uri:
        return uri + "?timeout=60"
    return uri


def shown_uri(text: str) -> str:
    """A URI (or a message holding one) as the user gave it: without `internal_uri`'s parameters."""
    return re.sub(r"\?timeout=60\b", "", text)


def setup(tracking_uri: str, workdir: Path, experiment: str) -> str:
    """Point MLflow at the store and return the study's experiment id (created if new).

    Logging is synchronous: the harness batches its requests (`log_run`, `EpochMetrics`), and with
    MLflow's asynchronous queue ending a run waited for the queue's next drain (see the module).
    """
    mlflow.config.enable_async_logging(False)
    mlflow.set_tracking_uri(internal_uri(tracking_uri))
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:") or "://" not in tracking_uri:
        location = (workdir / "mlartifacts").resolve().as_uri()
    try:
        # The kind tag opens the UI on the training-runs view instead of the GenAI one.
        return mlflow.create_experiment(experiment, artifact_location=location,
                                        tags={"mlflow.experimentKind": "custom_model_development"})
    except mlflow.exceptions.MlflowException:  # another worker created it first
        return mlflow.get_experiment_by_name(experiment).experiment_id


def process_tags(role: str) -> dict[str, str]:
    return {ROLE: role, "harness.host": socket.gethostname(), "harness.pid": str(os.getpid())}


def start(role: str, run_name: str, parent_run_id: str | None = None, experiment_id: str | None = None,
          tags: dict | None = None):
    """Start a run and make it the active one (Keras' MlflowCallback logs to the active run)."""
    return mlflow.start_run(run_name=run_name, experiment_id=experiment_id, nested=parent_run_id is not None,
                            parent_run_id=parent_run_id, tags={**process_tags(role), **(tags or {})})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_orphans(experiment_id: str) -> int:
    """Mark as KILLED the RUNNING runs of this host whose process no longer exists."""
    client = MlflowClient()
    host = socket.gethostname()
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                              max_results=5000)
    closed = 0
    for run in runs:
        tags = run.data.tags
        if tags.get("harness.host") != host or not tags.get("harness.pid", "").isdigit():
            continue
        pid = int(tags["harness.pid"])
        if pid != os.getpid() and not _pid_alive(pid):
            client.set_tag(run.info.run_id, "harness.closed_by", "resume: its process was gone")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
    if closed:
        log.warning("closed %d MLflow run(s) left RUNNING by a crashed process as KILLED", closed)
    return closed


def find_runs(experiment_id: str, role: str, **tags: str):
    filters = [f"tags.`{ROLE}` = '{role}'"] + [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    return MlflowClient().search_runs([experiment_id], filter_string=" and ".join(filters),
                                      max_results=5000)


_BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 entries) a request


def log_run(run_id: str | None = None, *, params: dict | None = None, metrics: dict | None = None,
            tags: dict | None = None, step: int = 0) -> None:
    """A run's params, metrics (at `step`) and tags in one synchronous `MlflowClient.log_batch`
    (more only past 100 params). `run_id`: None is the active run. Values become strings (params,
    tags) or floats (metrics), as the fluent `mlflow.log_*` calls make them.

    Raises MlflowException as `log_batch` does (a param logged twice with another value)."""
    run_id = run_id or mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    ps = [Param(k, str(v)) for k, v in (params or {}).items()]
    ms = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
    ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    client = MlflowClient()
    for i in range(0, max(len(ps), 1), _BATCH):
        first = i == 0
        client.log_batch(run_id, metrics=ms if first else [], params=ps[i:i + _BATCH], tags=ts if first else [],
                         synchronous=True)


class EpochMetrics(keras.callbacks.Callback):
    """Each epoch's logs (loss, accuracy, val_*: Keras' names) as metrics of a run at step = epoch,
    as MLflow's Keras callback logs them, in few synchronous `log_batch` requests: at the end of
    training, and whenever `flush_s` seconds have passed since the last one (so a long run's
    curves still grow while it trains). The optimizer's config goes with the first request as
    `optimizer_*` params (MLflow's callback logs those too; its model-summary artifact is left out).

    `run_id`: None is the run active when training begins. `clock`: an object with
    `add(name, seconds)` (training/clock.py's `TrialClock`), told the time spent here as `mlflow_epoch`.
    """

    def __init__(self, run_id: str | None = None, clock=None, flush_s: float = 10.0):
        super().__init__()
        self.run_id, self.clock, self.flush_s = run_id, clock, flush_s
        self._pending: list[Metric] = []
        self._params: dict = {}
        self._last = 0.0

    def _timed(self, fn):
        t0 = time.perf_counter()
        try:
            fn()
        finally:
            if self.clock is not None:
                self.clock.add("mlflow_epoch", time.perf_counter() - t0)

    def on_train_begin(self, logs=None):
        def begin():
            self._run = self.run_id or mlflow.active_run().info.run_id
            self._last = time.perf_counter()
            optimizer = getattr(self.model, "optimizer", None)
            config = dict(optimizer.get_config()) if optimizer else {}
            if optimizer:  # its class, not Keras' per-process numbered name (adam_19)
                config["name"] = type(optimizer).__name__.lower()
            self._params = {f"optimizer_{k}": v for k, v in config.items()}
        self._timed(begin)

    def on_epoch_end(self, epoch, logs=None):
        def add():
            now = int(time.time() * 1000)
            self._pending += [Metric(k, float(v), now, epoch) for k, v in (logs or {}).items()]
            if time.perf_counter() - self._last >= self.flush_s:
                self._flush()
        self._timed(add)

    def on_train_end(self, logs=None):
        self._timed(self._flush)

    def _flush(self):
        params = [Param(k, str(v)) for k, v in self._params.items()]
        if self._pending or params:
            client = MlflowClient()
            for i in range(0, max(len(self._pending), 1), 1000 - _BATCH):
                client.log_batch(self._run, metrics=self._pending[i:i + 1000 - _BATCH],
                                 params=params if i == 0 else [], synchronous=True)
        self._pending, self._params, self._last = [], {}, time.perf_counter()


def log_curves(history: dict[str, list[float]], run_id: str | None = None) -> None:
    """A Keras `fit` history ({name: [per epoch]}) as a run's curves (step = epoch), in one request
    (or a few past 900 values): validation figures (`val_*`) at the last epoch alone, where a run
    validated once at the end measured them."""
    run_id = run_id or mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    epochs = len(history.get("loss", []))
    ms = [Metric(k, float(x), now, e) for k, v in history.items() if not k.startswith("val_") for e, x in enumerate(v)]
    ms += [Metric(k, float(v[-1]), now, max(epochs - 1, 0)) for k, v in history.items() if k.startswith("val_") and v]
    client = MlflowClient()
    for i in range(0, len(ms), 1000 - _BATCH):
        client.log_batch(run_id, metrics=ms[i:i + 1000 - _BATCH], synchronous=True)


def log_history(history: list[dict[str, float]]) -> None:
    for epoch, logs in enumerate(history):
        mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)


SPLITS = (("transfer", "train", "training"), ("validation", "train", "validation"), ("test", "test", "test"))


def datasets(splits) -> list[tuple]:
    """The transfer, validation and test sets as MLflow datasets (name, split, content digest: the
    first 16 hex digits of `Split.digest`), each with its MLflow context and tags: what
    `log_datasets` puts on a run. A TFDS name's source is its catalog page; a folder's or an
    .npz's, its path."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    kind = getattr(splits, "kind", "tfds")
    if kind == "tfds":
        source = HTTPDatasetSource(f"https://www.tensorflow.org/datasets/catalog/{splits.dataset.split('/')[0]}")
    else:  # MLflow registers two local-file sources of one name and warns that it picks one: either is right
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(Path(splits.location).as_uri())
    out = []
    for role, tfds_split, context in SPLITS:
        s = getattr(splits, role)
        ds = mlflow.data.from_numpy(s.images, source=source, targets=s.labels, name=f"{splits.dataset}-{role}",
                                    digest=s.digest[:16])
        if role == "test" and getattr(splits, "test_source", "test") != "test":
            tfds_split = "train"  # a stratified slice of it: the data have no test split
        where = {"tfds.name": splits.dataset, "tfds.split": tfds_split} if kind == "tfds" else \
            {"harness.dataset": f"{kind}:{splits.location}"}
        out.append((ds, context, {**where, "harness.split": role, "examples": str(len(s))}))
    return out


def log_datasets(inputs: list[tuple], run_id: str | None = None) -> None:
    """Dataset inputs of a run (None: the active one; the runs table's Dataset column), all in one
    `MlflowClient.log_inputs` request.

    Two machines logging the same dataset at once can both try to insert it on a shared
    tracking server (seen: PostgreSQL's unique "dataset_pk" violated); the loser's retry
    finds the row and only links it to its run."""
    run_id = run_id or mlflow.active_run().info.run_id
    entities = [DatasetInput(ds._to_mlflow_entity(),
                             [InputTag("mlflow.data.context", context)] + [InputTag(k, v) for k, v in tags.items()])
                for ds, context, tags in inputs]
    for attempt in range(3):
        try:
            MlflowClient().log_inputs(run_id, datasets=entities)
            break
        except mlflow.exceptions.MlflowException as e:
            if attempt == 2 or "dataset_pk" not in str(e):
                raise
            time.sleep(0.2 * (attempt + 1))
