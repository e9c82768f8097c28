"""Resuming after a non-finite loss: from the last checkpoint whose tensors are all finite.

A run whose loss turned NaN or infinite stops with one line that gives the
command to follow, ``edflow -p <run> -t --optimizer/lr <lower>``
(:func:`divergence_message`). The checkpoint written just before the loss
was noted can already hold exploded weights (the loss of step ``s`` is
finite, its update is not); so a resumed training run checks the checkpoint
edflow chose (the highest step) and walks down to the newest one whose
floating-point tensors -- model, optimizer, everything -- are all finite
(:func:`last_finite_checkpoint`), naming each one it skips. The new
learning rate then applies (:mod:`invproto.iterators.resume_overrides`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Iterator

import torch

from invproto.errors import CheckpointError, RunError
from invproto.io import checkpoint_step, sibling_checkpoints


def nonfinite_tensors(state, prefix: str = "") -> Iterator[str]:
    """Dotted names of the floating-point tensors in ``state`` (nested dicts/lists) that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() and not bool(torch.isfinite(state).all()):
            yield prefix or "<tensor>"
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from nonfinite_tensors(value, f"{prefix}.{index}" if prefix else str(index))


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every tensor is finite -- one wait for the device, however many tensors."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def last_finite_checkpoint(checkpoint: str) -> str:
    """``checkpoint`` if its tensors are finite, else the newest finite ``<name>-<step>.ckpt`` below its step.

    Prints one line per skipped checkpoint naming its first non-finite
    tensors; raises :class:`CheckpointError` when no checkpoint is finite.
    """
    path = Path(checkpoint)
    step = checkpoint_step(path)
    candidates = [path]
    if step is not None:
        candidates += [p for s, p in sibling_checkpoints(path) if s < step]
    for candidate in candidates:
        bad = list(nonfinite_tensors(torch.load(candidate, map_location="cpu", weights_only=True)))
        if not bad:
            if candidate != path:
                print(f"invproto: resuming from {candidate}, the last checkpoint with finite weights",
                      file=sys.stderr, flush=True)
            return str(candidate)
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        print(f"invproto: skipping {candidate}: non-finite {shown}", file=sys.stderr, flush=True)
    raise CheckpointError(f"no checkpoint in {path.parent} has finite weights; "
                          f"start the run afresh (edflow -b <config> -t) with a lower optimizer.lr")


def resume_checkpoint(checkpoint: str | None) -> str | None:
    """:func:`last_finite_checkpoint` of ``checkpoint``, chosen by rank 0 (every rank raises if none is finite)."""
    from invproto import distributed

    if checkpoint is None:
        return None
    chosen, problem = None, None
    if distributed.is_main_process():
        try:
            chosen = last_finite_checkpoint(checkpoint)
        except CheckpointError as error:
            problem = str(error)
    chosen, problem = distributed.broadcast_from_main((chosen, problem))
    if problem is not None:
        raise CheckpointError(problem)
    return chosen


def divergence_message(what: str, step: int, run_root: str, lr: float) -> RunError:
    """The error that stops a diverged run; its advice is the command that resumes it."""
    return RunError(f"{what} is not finite at step {step}; the state is not saved. Resume from the last "
                    f"checkpoint with finite weights at a lower learning rate: "
                    f"edflow -p {run_root} -t --optimizer/lr {lr / 10:g}")
