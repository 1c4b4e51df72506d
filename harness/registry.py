"""The MLflow model registry's side of a study: a student (or teacher) logged as an MLflow model
with `mlflow.keras`, and registered with MLflow's own printed lines kept out of the console."""

from __future__ import annotations

import logging

import keras
import mlflow
import tensorflow as tf

log = logging.getLogger(__name__)


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


def set_version_tags(name: str, version: str, tags: dict[str, str]) -> None:
    """Tags on a registered model version. Two machines finishing one shared study can set the same
    tag at once; on PostgreSQL the loser's insert violates `model_version_tag_pk` (seen in
    tests/test_multi_machine.py), and its retry finds the row and updates it."""
    import time

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for k, v in tags.items():
        for attempt in range(3):
            try:
                client.set_model_version_tag(name, version, k, v)
                break
            except mlflow.exceptions.MlflowException as e:
                if attempt == 2 or "model_version_tag_pk" not in str(e):
                    raise
                time.sleep(0.2 * (attempt + 1))
