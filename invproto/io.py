"""Atomic file writes: write a temporary sibling, then ``os.replace`` it.

A reader (or a resumed run after SIGKILL) sees either the old file or the
complete new one, never a half-written file. Temporary names end in
``.tmp-<pid>`` so edflow's checkpoint discovery (``*.ckpt``) never picks one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> Path:
    """``(N, C, H, W)`` images in [-1, 1] -> one PNG grid with ``nrow`` images per row (atomic write)."""
    import torchvision

    return atomic_write(path, lambda tmp: torchvision.utils.save_image((images.float().cpu() + 1) / 2, tmp,
                                                                       nrow=nrow, padding=1, format="png"))
