import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist, each worker (and each study it starts in a subprocess, which inherits
# this) gets its share of the cores, so two workers do not oversubscribe a 2-core machine
# with two full TensorFlow thread pools each.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, len(os.sched_getaffinity(0)) // _workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _threads)

import numpy as np
import pytest

from harness import config, data


@pytest.fixture(scope="session")
def small_splits():
    """2,000 real Fashion-MNIST examples per split (validation and test smaller)."""
    return data.load_splits(config.DatasetConfig(limit=2000), seed=0)


@pytest.fixture
def random_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(256, 28, 28, 1)).astype(np.uint8)
    y = rng.integers(0, 10, size=256).astype(np.int64)
    return x, y
