"""Files on disk: atomic writes and checkpoint discovery.

Atomic writes write a temporary sibling, then ``os.replace`` it: a reader (or
a resumed run after SIGKILL) sees either the old file or the complete new one,
never a half-written file. Each write has its own temporary name
(``.<name>.<random>.tmp``, hidden, never ``*.ckpt``), so two writes of the same
file -- a save and a signal handler's save, say -- cannot clobber each other's
temporary file, and checkpoint discovery never picks one; it is removed when
the write fails.

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) stops a write with one
:class:`DiskFullError` line naming the file, about how much it needed, what
was kept (the previous file is never replaced by a partial one) and how to go
on; the temporary file is removed.

:func:`latest_checkpoint` is the checkpoint with the highest step, not the
newest file: a run copied with ``cp -r`` (new modification times in any
order) resumes where it stopped. :func:`save_checkpoint` can keep only the newest
few (``keep_checkpoints``), removing older ones after the new one is in place.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from invproto.errors import CheckpointError, RunError

if TYPE_CHECKING:
    import torch

CHECKPOINT_NAME = re.compile(r"^(?P<name>.+)-(?P<step>\d+)\.ckpt$")  # edflow's <model>-<step>.ckpt
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(RunError):
    """A write that found no space left on its device; nothing that was there before was replaced."""


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], size_hint: int | None = None) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically.

    ``size_hint`` (bytes, an estimate) only feeds the message of a :class:`DiskFullError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _pause_for_fault_injection(path)
        os.replace(tmp, path)
    except Exception as error:
        if not _is_disk_full(error):
            raise
        raise disk_full(path, size_hint, tmp) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def _is_disk_full(error: BaseException | None) -> bool:
    """``ENOSPC`` / ``EDQUOT``, also as the cause or context of another error (torch wraps it in a RuntimeError)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def disk_full(path: Path, size_hint: int | None, tmp: Path | None) -> DiskFullError:
    """The one line for a write of ``path`` that ran out of space (see the module doc)."""
    written = tmp.stat().st_size if tmp is not None and tmp.exists() else 0
    if size_hint:
        size = f"{'about ' if size_hint >= 50_000 else ''}{_megabytes(size_hint)} needed"
    else:
        size = f"{_megabytes(written)} written when it ran out"
    if path.is_file():
        kept = f"kept: the previous {path.name}, unchanged"
    elif checkpoint_step(path) is not None and latest_checkpoint(path.parent) is not None:
        kept = f"kept: the last checkpoint {latest_checkpoint(path.parent)}; nothing was replaced"
    else:
        kept = "kept: everything as it was; nothing was replaced"
    return DiskFullError(f"no space left on device writing {path} ({size}); {kept}; "
                         f"free space and resume with edflow -p {run_directory(path)} -t")


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 50_000 else "<0.1 MB"


def run_directory(path: Path) -> str:
    """The edflow run directory ``path`` lies in: the process's run if it holds ``path``, else the
    nearest folder above ``path`` with a ``configs/`` folder; ``<run>`` if there is none."""
    custom_logging = sys.modules.get("edflow.custom_logging")  # never imported here: edflow is slow to import
    run = getattr(custom_logging, "run", None)
    absolute = path.resolve()
    if getattr(run, "exists", False) and Path(run.root).resolve() in absolute.parents:
        return str(run.root)
    return next((str(folder) for folder in path.parents if (folder / "configs").is_dir()), "<run>")


def _pause_for_fault_injection(path: Path) -> None:
    """Test hook: with ``INVPROTO_PAUSE_IN_WRITE=<seconds>``, announce the write on stderr and wait there.

    The fault-injection tests send their signal at that deterministic moment:
    the file is written but not yet in place.
    """
    seconds = os.environ.get("INVPROTO_PAUSE_IN_WRITE")
    if seconds and path.suffix == ".ckpt":
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


def load_weights(path: str | os.PathLike, what: str, fix: str, map_location: str | torch.device = "cpu",
                 mmap: bool = False) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    A missing file, a damaged one, or one holding objects that only an unsafe
    load would build raises a one-line :class:`~invproto.errors.CheckpointError`
    -- ``<what> <path> ...; <fix>``. ``mmap`` maps the tensors instead of reading
    them (a cheap check that the file loads).
    """
    import torch  # here, not at the top: checkpoint discovery must not cost torch's import (seconds)

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist; {fix}")
    try:
        mappable = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format (every torch.save since 1.6)
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would precede the one-line error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mappable)
    except pickle.UnpicklingError:  # not a torch file, or one that would run code when loaded
        raise CheckpointError(f"cannot load {what} {path}: it is not a PyTorch file of weights (it is damaged, "
                              f"or holds objects that only an unsafe load would build); {fix}") from None
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot load {what} {path} ({type(error).__name__}: {reason}); {fix}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    data = text.encode()
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), size_hint=len(data))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    def save(tmp: Path) -> None:
        # Through a Python file: a full disk then raises OSError(ENOSPC); torch's own writer
        # (torch.save to a path) reports it as an opaque RuntimeError.
        with open(tmp, "wb") as file:
            torch.save(obj, file)

    return atomic_write(path, save, size_hint=tensor_bytes(obj))


def save_checkpoint(state: dict, path: str | os.PathLike, keep: int | None = None) -> Path:
    """:func:`atomic_torch_save` of a training ``state`` to ``path`` (``<name>-<step>.ckpt``); with ``keep``, then
    :func:`prune_checkpoints` beside it. Old checkpoints go only once the new one is complete."""
    saved = atomic_torch_save(state, path)
    if keep is not None:
        prune_checkpoints(saved, keep)
    return saved


def sibling_checkpoints(path: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, file)`` of the ``<name>-<step>.ckpt`` files beside ``path`` with its ``<name>`` (``path`` too, if it
    exists), highest step first; ``model-x-5.ckpt`` is not a sibling of ``model-8.ckpt``."""
    path = Path(path)
    name = CHECKPOINT_NAME.match(path.name)["name"]
    matches = ((CHECKPOINT_NAME.match(other.name), other) for other in path.parent.glob(f"{name}-*.ckpt"))
    return sorted(((int(match["step"]), other) for match, other in matches if match and match["name"] == name),
                  reverse=True)


def prune_checkpoints(latest: str | os.PathLike, keep: int) -> list[Path]:
    """Keep ``latest`` and the ``keep - 1`` highest-step checkpoints of its name beside it; remove the other
    ``<name>-<step>.ckpt`` files of that name (never other files). The removed paths, highest step first."""
    others = [path for _, path in sibling_checkpoints(latest) if path != Path(latest)]
    removed = others[keep - 1:]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists, tuples): about a checkpoint's size."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(value) for value in obj)
    return 0


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> Path:
    """``(N, C, H, W)`` images in [-1, 1] -> one PNG grid with ``nrow`` images per row (atomic write)."""
    import torchvision

    return atomic_write(path, lambda tmp: torchvision.utils.save_image((images.float().cpu() + 1) / 2, tmp,
                                                                       nrow=nrow, padding=1, format="png"),
                        size_hint=images.numel())  # uint8 pixels: PNG's upper bound, about
