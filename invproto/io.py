"""Files on disk: atomic writes and checkpoint discovery.

Atomic writes write a temporary sibling, then ``os.replace`` it: a reader (or
a resumed run after SIGKILL) sees either the old file or the complete new one,
never a half-written file. Each write has its own temporary name
(``.<name>.<random>.tmp``, hidden, never ``*.ckpt``), so two writes of the same
file -- a save and a signal handler's save, say -- cannot clobber each other's
temporary file, and checkpoint discovery never picks one; it is removed when
the write fails.

:func:`latest_checkpoint` is the checkpoint with the highest step, not the
newest file: a run copied with ``cp -r`` (new modification times in any
order) resumes where it stopped.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

CHECKPOINT_NAME = re.compile(r"^(?P<name>.+)-(?P<step>\d+)\.ckpt$")  # edflow's <model>-<step>.ckpt


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _pause_for_fault_injection(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _pause_for_fault_injection(path: Path) -> None:
    """Test hook: with ``INVPROTO_PAUSE_IN_WRITE=<seconds>``, announce the write on stderr and wait there.

    The fault-injection tests send their signal at that deterministic moment:
    the file is written but not yet in place.
    """
    seconds = os.environ.get("INVPROTO_PAUSE_IN_WRITE")
    if seconds and path.suffix == ".ckpt":
        import sys
        import time

        print(f"invproto: pausing in the write of {path}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step in a checkpoint's name (``model-1200.ckpt`` -> 1200); None for other names."""
    match = CHECKPOINT_NAME.match(Path(path).name)
    return int(match["step"]) if match else None


def latest_checkpoint(directory: str | os.PathLike, filter_cond: Callable[[str], bool] = lambda path: True
                      ) -> str | None:
    """The ``<name>-<step>.ckpt`` file of ``directory`` with the highest step (None if there is none).

    Same signature as edflow's ``get_latest_checkpoint``, which it replaces
    (:mod:`invproto.compat`): that one took the newest file.
    """
    directory = Path(directory)
    steps = {str(path): checkpoint_step(path) for path in directory.glob("*.ckpt")} if directory.is_dir() else {}
    candidates = [(step, path) for path, step in steps.items() if step is not None and filter_cond(path)]
    return max(candidates)[1] if candidates else None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> Path:
    """``(N, C, H, W)`` images in [-1, 1] -> one PNG grid with ``nrow`` images per row (atomic write)."""
    import torchvision

    return atomic_write(path, lambda tmp: torchvision.utils.save_image((images.float().cpu() + 1) / 2, tmp,
                                                                       nrow=nrow, padding=1, format="png"))
