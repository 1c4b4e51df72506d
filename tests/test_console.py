"""The console: quiet by default, everything with -v, a progress bar over search and confirmation.

The smoke study's own console is checked in test_study.py (it reuses that module's study).
"""

import io
import logging
import os
import subprocess
import sys
import textwrap

from helpers import ROOT

from harness import cli, logs


def test_the_bar_counts_the_search_then_the_confirmation():
    out = io.StringIO()
    bar = cli.StudyBar(disable=False, file=out)
    bar("search", 0, 3)
    assert (bar.n, bar.total) == (0, 3)
    bar("search", 1, 3)
    bar("search", 3, 3)
    bar("search", 3, 3)  # a repeated count (several workers, read from the storage) adds nothing
    assert (bar.n, bar.total) == (3, 3)
    bar("confirmation", 0, 4)  # the confirmation's size is known once the search is over
    bar("confirmation", 2, 4)
    assert (bar.n, bar.total) == (5, 7) and bar.bar.n == 5 and bar.bar.total == 7
    bar.close()
    last = out.getvalue().split("\r")[-1]
    assert "search 3/3, confirmation 2/4" in last and "5/7" in last and "left]" in last


def test_the_bar_stays_off_a_file_that_is_no_terminal():
    out = io.StringIO()
    bar = cli.StudyBar(file=out)  # disable=None: tqdm's own test, isatty
    bar("search", 1, 3)
    bar.close()
    assert out.getvalue() == ""


def test_verbose_is_an_option_of_every_command():
    parser = cli.build_parser()
    assert parser.parse_args(["study", "x.yaml", "-v"]).verbose
    assert parser.parse_args(["report", "--verbose", "x.yaml"]).verbose
    assert not parser.parse_args(["bench"]).verbose


def test_converter_output_is_logged_at_debug_and_shown_when_the_block_fails(capfd, caplog):
    log = logging.getLogger("harness.test")
    with caplog.at_level(logging.DEBUG, logger="harness.test"):
        with logs.captured_stderr(log, "the converter"):
            os.write(2, b"fully_quantize: 0, inference_type: 6\n")
        try:
            with logs.captured_stderr(log, "the converter"):
                os.write(2, b"error: op not supported\n")
                raise RuntimeError("conversion failed")
        except RuntimeError:
            pass
    assert capfd.readouterr().err == ""
    (quiet, failed) = caplog.records
    assert quiet.levelno == logging.DEBUG and "fully_quantize: 0" in quiet.getMessage()
    assert failed.levelno == logging.WARNING and "error: op not supported" in failed.getMessage()


BANNER = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
          "I0000 00:00:1796014120.085390   15385 port.cc:153] oneDNN custom operations are on. You may see "
          "slightly different numerical results due to floating-point round-off errors from different "
          "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n")


def _import_fake_tensorflow(tmp_path, body, verbose=False):
    """`import tensorflow` of a stand-in package that writes to fd 2 as TensorFlow's libraries do."""
    (tmp_path / "tensorflow").mkdir(exist_ok=True)
    (tmp_path / "tensorflow" / "__init__.py").write_text(textwrap.dedent(body))
    code = "from harness import logs; logs.quiet_tensorflow_import(); import tensorflow; print('imported')"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", logs.VERBOSE_ENV: "1" if verbose else "0"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)


def test_tensorflow_start_up_lines_are_dropped_and_nothing_else(tmp_path):
    body = f"""
        import os
        os.write(2, {BANNER.encode()!r})
        os.write(2, b"E0000 something real went wrong\\n")
        os.write(2, {BANNER.encode()!r})
    """
    quiet = _import_fake_tensorflow(tmp_path, body)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "imported"
    assert quiet.stderr == "E0000 something real went wrong\n"
    loud = _import_fake_tensorflow(tmp_path, body, verbose=True)
    assert loud.stderr.count("oneDNN custom operations are on") == 2 and "something real" in loud.stderr


def test_an_import_error_of_tensorflow_comes_through_whole(tmp_path):
    body = f"""
        import os
        os.write(2, {BANNER.encode()!r})
        os.write(2, b"cannot load libcudart.so\\n")
        raise ImportError("the real reason")
    """
    r = _import_fake_tensorflow(tmp_path, body)
    assert r.returncode == 1 and "cannot load libcudart.so" in r.stderr
    assert "ImportError: the real reason" in r.stderr and "oneDNN" not in r.stderr


def test_only_the_keras_step_retracing_false_alarm_is_dropped(monkeypatch):
    keras_step = ("6 out of the last 10 calls to <function TensorFlowTrainer._make_function.<locals>."
                  "multi_step_on_iterator at 0x7f016474b7e0> triggered tf.function retracing. Tracing is expensive")
    mine = keras_step.replace("TensorFlowTrainer._make_function.<locals>.multi_step_on_iterator", "predict_logits")

    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")  # configure_logging sets it when unset
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("harness", *logs.NOISY)}

    def shown(message, verbose):
        logs.configure_logging(verbose_=verbose)
        record = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)
        return logging.getLogger("tensorflow").filter(record)

    try:
        assert not shown(keras_step, verbose=False) and shown(mine, verbose=False)
        assert shown(keras_step, verbose=True)
    finally:  # as pytest had it
        logging.getLogger("tensorflow").removeFilter(logs._not_keras_step_retracing)
        root.handlers[:], _, levels = saved
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

