"""Processes under ``torchrun``: who am I, and the collectives between us.

This module holds the low-level part of multi-process training: rank
queries, the process group and the collectives. The rest lives with the code
it serves: the sharding of every global batch with the data
(:mod:`invproto.data.sharding`), the DistributedDataParallel wrapper with the
iterators (:mod:`invproto.iterators.ddp`), and the edflow run-directory set-up
with the edflow glue (:func:`invproto.compat.init_run`).

``torchrun --standalone --nproc_per_node=N $(which edflow) -b configs/x.yaml -t``
starts N processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Then

* the default process group starts -- NCCL with one GPU per process
  (``cuda:<LOCAL_RANK>``), gloo on the CPU -- when edflow sets up its run
  directory, the first thing the ``edflow`` script does
  (:func:`invproto.compat.init_run`);
* only rank 0 has a run directory; the other ranks log to a throwaway
  directory, removed when they exit, and run with rank 0's config and
  checkpoint (:func:`broadcast_from_main`): one run directory, one checkpoint
  series, one wandb run, one ``results/``;
* ``batch_size`` in the config is the global batch: every rank draws the same
  example order of each epoch and takes its ``batch_size / world_size``
  examples of each global batch (:class:`invproto.data.sharding.Shard`,
  used by :mod:`invproto.data.batches`);
* the iterator trains through DistributedDataParallel
  (:func:`invproto.iterators.ddp.replicate`), every rank receives
  the evaluation outputs of all ranks and runs the evaluation callbacks on
  them (FID/KID share the Inception work, :mod:`invproto.fid.sharding`; rank 0
  alone records the scores), and logged scalars are averaged over the ranks
  (:mod:`invproto.iterators.base`).

With one process -- no torchrun, or ``--nproc_per_node=1`` -- every helper
here is the identity: rank 0 of one, no process group.
"""

from __future__ import annotations

import atexit
import datetime
import os
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist

from invproto.errors import ConfigError

# Generous: a rank may wait long at a collective, e.g. while rank 0 alone computes FID from gathered features
# (a large covariance's eigendecomposition) or writes a checkpoint.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=1)

_control_group: dist.ProcessGroup | None = None  # gloo, for small host-side decisions (None: the default group)


def world_size() -> int:
    """Number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's rank, 0 .. world_size - 1 (0 without torchrun)."""
    return int(os.environ.get("RANK", 0))


def local_rank() -> int:
    """This process's rank on its machine: the index of its GPU."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    return rank() == 0


def device() -> torch.device:
    """``cuda:<LOCAL_RANK>`` under torchrun, ``cuda`` without, when CUDA is available; else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank()) if "LOCAL_RANK" in os.environ else torch.device("cuda")


def setup() -> None:
    """Start the default process group, once (NCCL on CUDA, gloo on the CPU); nothing with one process."""
    global _control_group
    if not is_distributed() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device())
        _control_group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    atexit.register(_shut_down)


def _shut_down() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(global_batch_size: int, processes: int | None = None) -> int:
    """Examples per process of a global batch; stops the run when the processes cannot share it evenly."""
    processes = processes or world_size()
    if global_batch_size % processes:
        raise ConfigError(f"batch_size {global_batch_size} is the global batch and cannot be split "
                         f"evenly over {processes} processes; set batch_size to a multiple of {processes}")
    return global_batch_size // processes


# --- collectives (the identity with one process) -------------------------------
def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object), on every rank."""
    if not is_distributed():
        return obj
    setup()
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_to_main(obj: Any) -> list | None:
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, ``None`` on the others (``[obj]`` with one process)."""
    if not is_distributed():
        return [obj]
    setup()
    gathered = [None] * world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def all_gather(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` with one process)."""
    if not is_distributed():
        return [obj]
    setup()
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (``flag`` itself with one process).

    A host-side all-reduce (gloo): it never waits for the GPU, so a training
    loop can ask every step.
    """
    if not is_distributed():
        return flag
    setup()
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_control_group)
    return bool(value.item())


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (a new tensor; ``tensor`` itself with one process)."""
    if not is_distributed():
        return tensor
    setup()
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over the ranks."""
    return sum_over_ranks(tensor) / world_size()


def mean_scalars_over_ranks(scalars: Mapping[str, float]) -> dict[str, float]:
    """Each scalar averaged over the ranks that report it."""
    if not is_distributed():
        return dict(scalars)
    setup()
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, {k: float(v) for k, v in scalars.items()})
    names = dict.fromkeys(k for reported in gathered for k in reported)
    return {k: float(np.mean([reported[k] for reported in gathered if k in reported])) for k in names}


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Replace every gradient by its mean over the ranks, in one all-reduce.

    For optimizers outside DistributedDataParallel; every rank must hold
    gradients for the same parameters.
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not is_distributed() or not gradients:
        return
    flat = torch.cat([g.reshape(-1) for g in gradients])
    dist.all_reduce(flat)
    flat /= world_size()
    for gradient, mean in zip(gradients, flat.split([g.numel() for g in gradients])):
        gradient.copy_(mean.view_as(gradient))
