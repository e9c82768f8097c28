"""Checkpoints load as weights only: a pickle that would run code, or a damaged file, is refused in one line."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from invproto.errors import CheckpointError
from invproto.io import load_weights


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("mmap", [False, True])
def test_a_code_payload_is_refused_and_never_runs(tmp_path, mmap):
    marker = tmp_path / "payload_ran"
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match="evil.ckpt: it is not a PyTorch file of weights") as error:
        load_weights(tmp_path / "evil.ckpt", "checkpoint", "pass another", mmap=mmap)
    assert "\n" not in str(error.value) and str(error.value).endswith("; pass another")
    assert not marker.exists()


@pytest.mark.parametrize("mmap", [False, True])
def test_weights_load_whole_or_mapped_and_damage_or_absence_is_one_line(tmp_path, mmap):
    torch.save({"weight": torch.arange(4.0)}, tmp_path / "good.ckpt")
    assert torch.equal(load_weights(tmp_path / "good.ckpt", "checkpoint", "fix", mmap=mmap)["weight"],
                       torch.arange(4.0))
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:100])
    for name, expected in [("cut.ckpt", "cannot load checkpoint"), ("none.ckpt", "does not exist")]:
        with pytest.raises(CheckpointError, match=expected) as error:
            load_weights(tmp_path / name, "checkpoint", "fix", mmap=mmap)
        assert "\n" not in str(error.value)
