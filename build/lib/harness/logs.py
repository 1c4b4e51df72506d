"""Logging set-up for the command line and for worker processes (library code only logs)."""

from __future__ import annotations

import logging
import sys

NOISY = ("absl", "tensorflow", "h5py", "matplotlib", "alembic", "mlflow", "urllib3", "git")


def configure_logging(prefix: str = "") -> None:
    fmt = "%(asctime)s " + (f"[{prefix}] " if prefix else "") + "%(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt, datefmt="%H:%M:%S", stream=sys.stdout, force=True)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
