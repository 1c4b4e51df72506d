"""TensorFlow's oneDNN kernels are on wherever the harness runs, unless the user turned them off.

TensorFlow leaves them off by default on CPUs without AVX-512 (an AMD EPYC with AVX2), where the
CNN students then train 1.6-2.4x slower (docs/performance.md). Each check imports TensorFlow in a
fresh interpreter: the switch is read at its import.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ("import harness, tensorflow\n"
         "from tensorflow.python.util import _pywrap_util_port\n"
         "print(_pywrap_util_port.IsMklEnabled())\n")


def _onednn_enabled(**env) -> bool:
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    r = subprocess.run([sys.executable, "-c", CHECK], env={**base, "PYTHONPATH": str(ROOT), **env},
                       capture_output=True, text=True, check=True)
    return r.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("env, expected", [({}, True), ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False)],
                         ids=["default-on", "user-off-kept"])
def test_importing_the_harness_turns_onednn_on_unless_the_user_chose(env, expected):
    assert _onednn_enabled(**env) is expected
