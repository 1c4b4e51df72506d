"""TensorFlow's oneDNN kernels are on wherever the harness runs, unless the user turned them off.

TensorFlow leaves them off by default on CPUs without AVX-512 (an AMD EPYC with AVX2), where the
CNN students then train 1.6-2.4x slower (docs/performance.md). Each check runs in a fresh interpreter:
the switch is read when TensorFlow is imported.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ("import os, harness, tensorflow\n"
         "from tensorflow.python.util import _pywrap_util_port\n"
         "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], _pywrap_util_port.IsMklEnabled())\n")


def _fresh(code: str, **env) -> str:
    """The last line `code` prints in a fresh interpreter, TF_ENABLE_ONEDNN_OPTS as `env` has it."""
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    r = subprocess.run([sys.executable, "-c", code], env={**base, "PYTHONPATH": str(ROOT), **env},
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def test_importing_the_harness_turns_onednn_on():
    assert _fresh(CHECK) == "1 True"  # set by the harness, and TensorFlow's kernels on


def test_the_users_own_choice_is_kept():
    """The harness leaves the variable as the user set it, before TensorFlow is imported; what TensorFlow
    then does with it is its own (so no TensorFlow import here: 8 s a check on these CPUs)."""
    code = "import os, sys, harness; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], 'tensorflow' in sys.modules)"
    assert _fresh(code, TF_ENABLE_ONEDNN_OPTS="0") == "0 False"
