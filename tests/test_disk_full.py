"""A full disk stops a write with one line; the previous file is kept and no temporary file is left.

In-process tests inject ``OSError(ENOSPC)`` (and ``EDQUOT``) into each writer
of :mod:`invproto.io`; the slow tests mount a real 1 MiB tmpfs (root only,
skipped where ``mount`` fails) and fill it from a separate process.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from invproto import io
from invproto.errors import RunError
from invproto.io import DiskFullError, atomic_torch_save, atomic_write, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def make_run(tmp_path: Path) -> tuple[Path, Path]:
    """An edflow-like run directory (``configs/``, ``train/checkpoints/``); returns (run, checkpoints)."""
    run = tmp_path / "logs" / "2026-01-01T00-00-00_test"
    (run / "configs").mkdir(parents=True)
    (run / "train" / "checkpoints").mkdir(parents=True)
    return run, run / "train" / "checkpoints"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class FullDisk:
    """A file opened for writing that accepts ``room`` bytes, then raises ``OSError(code)``."""

    def __init__(self, path, room: int, code: int):
        self.file, self.room, self.code = open(path, "wb"), room, code

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.file.write(data[:self.room])
            self.room = 0
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_checkpoint_on_a_full_disk_keeps_the_last_one(code, tmp_path, monkeypatch):
    run, checkpoints = make_run(tmp_path)
    old = checkpoints / "model-100.ckpt"
    atomic_torch_save({"w": torch.ones(10)}, old)
    before = old.read_bytes()
    monkeypatch.setattr(io, "open", lambda path, mode="r": FullDisk(path, 4096, code), raising=False)
    new = checkpoints / "model-200.ckpt"
    with pytest.raises(DiskFullError) as error:
        atomic_torch_save({"w": torch.zeros(2_000_000)}, new)  # 8 MB of float32
    assert isinstance(error.value, RunError)
    assert str(error.value) == (f"no space left on device writing {new} (about 8.0 MB needed); kept: the last "
                                f"checkpoint {old}; nothing was replaced; free space and resume with edflow -p "
                                f"{run} -t")
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one line, no chained traceback
    assert old.read_bytes() == before and not new.exists() and leftovers(checkpoints) == []


def test_text_on_a_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path)
    scores = run / "results" / "scores.yaml"
    atomic_write_text(scores, "final: {accuracy: 0.9}\n")

    def write_bytes(self, data):
        with FullDisk(self, 10, errno.ENOSPC) as file:
            file.write(data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(DiskFullError) as error:
        atomic_write_text(scores, "final: {accuracy: 0.95}\n" * 100)
    message = str(error.value)
    assert message.startswith(f"no space left on device writing {scores} (<0.1 MB needed); kept: the previous "
                              f"scores.yaml, unchanged; free space and resume with edflow -p {run} -t")
    assert scores.read_text() == "final: {accuracy: 0.9}\n" and leftovers(scores.parent) == []


def test_a_first_write_says_nothing_was_replaced(tmp_path):
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "grid.png"
    with pytest.raises(DiskFullError, match=re.escape(f"writing {target} (<0.1 MB written when it ran out); "
                                                      "kept: everything as it was; nothing was replaced; "
                                                      "free space and resume with edflow -p <run> -t")):
        atomic_write(target, write)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_fsync_is_reported_too(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    atomic_write_text(target, "step\n1\n")

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", fsync)
    with pytest.raises(DiskFullError, match="kept: the previous metrics.csv, unchanged"):
        atomic_write_text(target, "step\n1\n2\n")
    assert target.read_text() == "step\n1\n" and leftovers(tmp_path) == []


def test_other_write_errors_pass_through_and_clean_up(tmp_path):
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError) as error:
        atomic_write(tmp_path / "x.yaml", write)
    assert error.value.errno == errno.EIO and not isinstance(error.value, DiskFullError)
    assert list(tmp_path.iterdir()) == []


def test_the_run_of_this_process_is_named(tmp_path, monkeypatch):
    from edflow.custom_logging import run

    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="disk_full")
    target = Path(run.root) / "train" / "checkpoints" / "model-5.ckpt"
    monkeypatch.setattr(io, "open", lambda path, mode="r": FullDisk(path, 0, errno.ENOSPC), raising=False)
    with pytest.raises(DiskFullError, match=re.escape(f"resume with edflow -p {run.root} -t")):
        atomic_torch_save({"w": torch.zeros(10)}, target)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB tmpfs at ``tmp_path / "disk"``; skipped where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


WRITER = """
import sys, torch
from invproto.errors import InvprotoError
from invproto.io import atomic_torch_save, save_grid
kind, path = sys.argv[1:]
try:
    if kind == "checkpoint":
        atomic_torch_save({"w": torch.zeros(1_000_000)}, path)  # 4 MB on a 1 MiB disk
    else:
        save_grid(torch.rand(144, 3, 64, 64) * 2 - 1, path, nrow=12)  # 1.8 MB of noise: PNG cannot shrink it
except InvprotoError as error:  # what the command-line entries do
    print(f"invproto: {error}", file=sys.stderr)
    sys.exit(error.exit_status)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["checkpoint", "grid"])
def test_a_real_full_disk_is_one_line_and_keeps_the_old_file(kind, tiny_tmpfs):
    run, checkpoints = make_run(tiny_tmpfs)
    old = checkpoints / ("model-1.ckpt" if kind == "checkpoint" else "grid.png")
    atomic_torch_save({"w": torch.arange(1000.0)}, old)
    before = old.read_bytes()
    new = checkpoints / ("model-2.ckpt" if kind == "checkpoint" else "grid.png")
    done = subprocess.run([sys.executable, "-c", WRITER, kind, str(new)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    kept = f"kept: the last checkpoint {old}" if kind == "checkpoint" else "kept: the previous grid.png"
    assert lines[0].startswith(f"invproto: no space left on device writing {new} (about ")
    assert kept in lines[0] and lines[0].endswith(f"free space and resume with edflow -p {run} -t")
    assert old.read_bytes() == before
    assert leftovers(checkpoints) == [] and (kind == "grid" or not new.exists())
