"""The install puts edflow's NumPy-2 compatibility in effect (invproto/compat.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from invproto import compat

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_edflow_cli_runs():
    result = subprocess.run([str(BIN / "edflow"), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--base" in result.stdout and "--project" in result.stdout


@pytest.mark.slow
def test_hook_is_lazy_and_restores_numpy_aliases_for_edflow():
    code = (
        "import sys, numpy\n"
        "assert 'float' not in numpy.__dict__, 'numpy patched before edflow was imported'\n"
        "import edflow, chainer\n"
        "from edflow.iterators.template_iterator import TemplateIterator\n"
        "assert numpy.float is float and numpy.int is int\n"
        "assert numpy.float32 in numpy.sctypes['float']\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_pth_file_installed_in_this_environment():
    assert compat.pth_path().read_text() == compat.PTH_LINE
    assert compat.main(["check"]) == 0


def test_patch_numpy_is_idempotent():
    import numpy as np

    compat.patch_numpy()
    sctypes = np.sctypes
    compat.patch_numpy()
    assert np.sctypes is sctypes and np.float is float
