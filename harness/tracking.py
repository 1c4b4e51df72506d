"""MLflow bookkeeping: one experiment per study, nested runs, closing what a crash left open.

Every run the harness starts is tagged with its role (`study`, `teacher`,
`twin`, `trial`, `confirm`), the host and the process id. A later invocation on the
same host closes runs whose process is gone as KILLED, so the UI never shows
a crashed trial as still running.
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
import tensorflow as tf
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

    Params, metrics and tags are logged asynchronously (MLflow's own queue): the
    per-epoch metrics go while the next epoch trains; ending a run waits for its queue.
    """
    mlflow.config.enable_async_logging(True)
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


def log_student(model, sample, name: str = "model", class_names: list[str] | None = None):
    """Log a Keras model with `mlflow.keras`; returns the ModelInfo (its `model_uri`). With
    `class_names`, the MLmodel's metadata holds them (`class_names`: class id -> name).

    Requirements are given, not inferred: inference imports the model in a
    subprocess, which costs seconds per trial.

    No input schema is logged: MLflow enforces a tensor schema's dtype exactly, so a float32 one
    made `mlflow.pyfunc.load_model(...).predict` refuse the uint8 images TFDS and image files
    give, and numpy's float64. Without it, pyfunc and `mlflow models serve` pass any numeric
    images `[batch, H, W, C]` (0-255) to the model, whose float32 input layer casts them, as the
    SavedModel's `serve_uint8` does. `sample` is unused (kept for callers); the flavour's
    warning about a missing signature is silenced here, where the choice is made.
    """
    del sample
    reqs = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}"]
    keras_log = logging.getLogger("mlflow.keras.save")
    level = keras_log.level
    keras_log.setLevel(logging.ERROR)
    try:
        return mlflow.keras.log_model(model, name=name, pip_requirements=reqs, signature=None,
                                      metadata={"class_names": list(class_names)} if class_names else None)
    finally:
        keras_log.setLevel(level)


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


def log_datasets(inputs: list[tuple]) -> None:
    """Dataset inputs of the active run (the runs table's Dataset column).

    Two machines logging the same dataset at once can both try to insert it on a shared
    tracking server (seen: PostgreSQL's unique "dataset_pk" violated); the loser's retry
    finds the row and only links it to its run."""
    for ds, context, tags in inputs:
        for attempt in range(3):
            try:
                mlflow.log_input(ds, context=context, tags=tags)
                break
            except mlflow.exceptions.MlflowException as e:
                if attempt == 2 or "dataset_pk" not in str(e):
                    raise
                time.sleep(0.2 * (attempt + 1))


def register_model(model_uri: str, name: str):
    """`mlflow.register_model`, its "Successfully registered model" and "Created version" lines (which
    MLflow prints to stderr whatever its log level) logged at DEBUG instead: the harness says what it
    registered in its own line."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        mv = mlflow.register_model(model_uri, name)
    for line in printed.getvalue().splitlines():
        log.debug("mlflow: %s", line)
    return mv
