import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from harness import config
from harness.data import sources


# The files with the most seconds of tests first (pytest --durations=0, 2026-12-06; a file left out
# runs after these, in pytest's order). `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`:
# xdist then hands whole files to its two workers in this order, as each runs short of work, so the
# long files do not all come last on one worker (xdist's own reorder, by number of tests, put the
# two-test crash and two-worker files last: one worker ran 406 s of tests, the other 360).
SLOW_FIRST = ("test_study.py", "test_robust.py", "test_own_teacher.py", "test_crash.py", "test_multi_machine.py",
              "test_bench.py", "test_reliability.py", "test_methods.py", "test_compress.py", "test_population.py",
              "test_bad_input.py", "test_export.py", "test_views.py", "test_own_data.py", "test_distiller.py",
              "test_own_student.py", "test_teacher.py", "test_fitnets.py", "test_compiled.py", "test_examples.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order kept


@pytest.fixture(scope="session", autouse=True)
def _mlflow_tables_copied(tmp_path_factory):
    """A new SQLite MLflow store made in this test process gets its tables as a copy (sqlite3's backup)
    of an empty store MLflow set up once in the process, instead of MLflow replaying its Alembic
    migrations each time: 1.2-1.5 s a store on these CPUs, 20 stores in process (29 s of the suite).
    The tables are MLflow's own, at its head revision; stores made by a subprocess (the smoke study,
    the workers, the crash) still go through MLflow's own set-up, and its log line is tested there."""
    import contextlib
    import sqlite3

    import mlflow.store.db.utils as db_utils
    import mlflow.store.model_registry.sqlalchemy_store as registry_store
    import sqlalchemy

    real = db_utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow_tables") / "mlflow.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{template}")
    real(engine)
    engine.dispose()

    def initialize(engine):
        if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return real(engine)
        with contextlib.closing(sqlite3.connect(template)) as src, \
                contextlib.closing(sqlite3.connect(engine.url.database)) as dst:
            src.backup(dst)

    patch = pytest.MonkeyPatch()
    patch.setattr(db_utils, "_initialize_tables", initialize)
    patch.setattr(registry_store, "_initialize_tables", initialize)
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _decoded_splits_shared_by_this_run(tmp_path_factory):
    """The run's decoded splits kept on disk where both xdist workers and every subprocess find them
    (`tfds_data.disk_cache`), not in the user's ~/.cache: a fresh run decodes each split once, as a
    fresh machine would, and pytest removes the folder with its old temporary dirs."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "kd-harness-cache"
    patch = pytest.MonkeyPatch()
    patch.setenv("KD_HARNESS_CACHE", str(shared))
    yield
    patch.undo()


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
