import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
