"""Logging set-up for the command line and for worker processes (library code only logs).

By default the console carries the harness' own lines and every warning, and
leaves out what libraries print while setting themselves up: MLflow's and
alembic's database set-up (`MLFLOW_LOGGING_LEVEL`), the TFLite converter's
summary line (`captured_stderr`, at DEBUG) and TensorFlow's two start-up lines
(`quiet_tensorflow_import`). `verbose` (the command line's `-v`) brings all of
it back and logs the harness at DEBUG. Worker processes inherit the choice
through the `HARNESS_VERBOSE` environment variable.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable

# A progress observer, called as `progress(phase, done, total)`: phase "search" (trials finished
# of this invocation's `total`) or "confirmation" (paired runs done of `total`). The command line
# passes one that draws its progress bar; library code reports through it and never prints.
Progress = Callable[[str, int, int], None]

NOISY = ("absl", "tensorflow", "h5py", "matplotlib", "alembic", "mlflow", "urllib3", "git")
VERBOSE_ENV = "HARNESS_VERBOSE"

# Printed by the static initialisers of two of TensorFlow's shared libraries as they load
# (`_pywrap_cpu_feature_guard.so`, through libtensorflow_framework, and
# `_pywrap_profiler_plugin.so`, which carries its own copy of absl and of TSL's port.cc): hence
# twice. absl logs everything to stderr before `absl::InitializeLog()`, so TF_CPP_MIN_LOG_LEVEL
# (even 3) does not reach them, and absl reads no environment variable for its threshold.
TENSORFLOW_BANNER = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:. ]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "),
    re.compile(r"^I\d{4} [\d:. ]+ +\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized "),
    re.compile(r"^To enable the following instructions: .* in other operations, rebuild TensorFlow "),
)


# TensorFlow's frequent-retracing detector counts calls per Python code object, and every Keras
# model's train, test and predict functions are closures of the same code
# (`TensorFlowTrainer._make_function.<locals>.multi_step_on_iterator`). The harness traces each
# compiled model's functions once (`distill/compiled.py`; `tests/test_compiled.py` fails when a
# re-used model traces again), but a small study's fit is one call per epoch
# (steps_per_execution 32 >= its batches), so the first traces of a few models (a twin and a
# student per width) fill TensorFlow's window of 10 calls and it warns of "retracing" that is
# not there. The validation's forward pass (`training/validation.py`, one tf.function per student,
# traced once: `tests/test_validation.py`) is the same case. Only these false alarms are dropped:
# a retracing warning about any other function shows.
KERAS_STEP_RETRACING = re.compile(r"\d+ out of the last \d+ calls to <function (TensorFlowTrainer\."
                                  r"(_make_function|make_predict_function)|Forward\.__call__)\.<locals>\.\w+ "
                                  r"at 0x[0-9a-f]+> triggered tf\.function retracing")


def _not_keras_step_retracing(record: logging.LogRecord) -> bool:
    return not KERAS_STEP_RETRACING.match(record.getMessage())


def verbose() -> bool:
    """True when the command line was given `-v` (in this process or the one that started it)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def configure_logging(prefix: str = "", verbose_: bool | None = None) -> None:
    """Log lines `HH:MM:SS [prefix] message` on stdout; the harness at DEBUG when verbose.

    Quiet (the default): the libraries in `NOISY` log warnings and errors only, MLflow's own
    loggers too (`MLFLOW_LOGGING_LEVEL=WARNING`, read when MLflow is imported, unless the user
    set it). `verbose_` defaults to `verbose()`.
    """
    loud = verbose() if verbose_ is None else verbose_
    fmt = "%(asctime)s " + (f"[{prefix}] " if prefix else "") + "%(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt, datefmt="%H:%M:%S", stream=sys.stdout, force=True)
    logging.getLogger("harness").setLevel(logging.DEBUG if loud else logging.NOTSET)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.NOTSET if loud else logging.WARNING)
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.removeFilter(_not_keras_step_retracing)
    if not loud:
        tf_logger.addFilter(_not_keras_step_retracing)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


@contextlib.contextmanager
def captured_stderr(log: logging.Logger, what: str):
    """What native code writes to file descriptor 2 inside the block, logged instead of shown.

    For libraries that print from C++ (the TFLite converter's `fully_quantize: 0, ...`): the
    text goes to `log` at DEBUG (`-v` shows it) and, when the block raises, at WARNING, so an
    error the library printed is never lost. Process-wide while it lasts: another thread's
    stderr in that window is captured (and logged) too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            text = f.read().decode(errors="replace").strip()
            if text:
                log.log(logging.WARNING if failed else logging.DEBUG, "%s printed:\n%s", what, text)


def filter_lines(text: str, drop=TENSORFLOW_BANNER) -> str:
    """`text` without the lines one of `drop`'s patterns matches (TensorFlow's start-up lines)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(p.match(line.rstrip("\n")) for p in drop))


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Runs the first `import tensorflow` with fd 2 going to a file, then writes that file back to
    stderr minus the start-up lines (`TENSORFLOW_BANNER`): every other line, an import error's
    included, comes through, in order. What is lost: output before a hard crash (a signal) inside
    the import itself; `-v` imports TensorFlow untouched."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            sys.stderr.flush()
            saved = os.dup(2)
            with tempfile.TemporaryFile() as f:
                os.dup2(f.fileno(), 2)
                try:
                    real_exec(module)
                finally:
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    os.close(saved)
                    f.seek(0)
                    rest = filter_lines(f.read().decode(errors="replace"))
                    if rest:
                        sys.stderr.write(rest)
                        sys.stderr.flush()

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Keep TensorFlow's start-up lines (`TENSORFLOW_BANNER`) off the console when it is first
    imported in this process. No effect when it is already imported or when `verbose()`."""
    if "tensorflow" in sys.modules or verbose() or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())
