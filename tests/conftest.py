import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness import config
from harness.data import sources


@pytest.fixture(scope="session")
def small_splits():
    """2,000 real Fashion-MNIST examples per split (validation and test smaller)."""
    return sources.load_splits(config.DatasetConfig(limit=2000), seed=0)


@pytest.fixture(scope="session")
def smoke_teacher_cache(tmp_path_factory):
    """The smoke study's teacher cache, trained once per test process.

    Subprocess studies whose subject is not the teacher start from a copy
    (`helpers.workdir_with_teacher`): what a second run finds anyway, minus a
    teacher's training per test.
    """
    from helpers import SMOKE

    from harness.teacher import trained as teacher

    cfg = config.load(SMOKE)
    cache = tmp_path_factory.mktemp("smoke_teacher") / "teacher_cache"
    teacher.load_or_train(cfg, sources.load_splits(cfg.dataset, cfg.seed), cache)
    return cache


@pytest.fixture
def random_data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(256, 28, 28, 1)).astype(np.uint8)
    y = rng.integers(0, 10, size=256).astype(np.int64)
    return x, y


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A test that runs `harness.cli.main` in-process points the root logger at its captured stdout;
    put back the handlers of before, so a later test never logs to that closed stream."""
    import logging
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
