"""Multi-process training under ``torchrun`` on PyTorch's DistributedDataParallel.

``torchrun --standalone --nproc_per_node=N $(which edflow) -b configs/x.yaml -t``
starts N processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Then

* the default process group starts -- NCCL with one GPU per process
  (``cuda:<LOCAL_RANK>``), gloo on the CPU -- when edflow sets up its run
  directory, the first thing the ``edflow`` script does (:func:`init_run`,
  wired in by :mod:`invproto.compat`);
* only rank 0 has a run directory; the other ranks log to a throwaway
  directory, removed when they exit, and run with rank 0's config and
  checkpoint (:func:`broadcast_from_main`): one run directory, one checkpoint
  series, one wandb run, one ``results/``;
* ``batch_size`` in the config is the global batch: every rank draws the same
  example order of each epoch and takes its ``batch_size / world_size``
  examples of each global batch (:class:`Shard`, used by
  :mod:`invproto.data.batches`);
* the iterator trains through DistributedDataParallel, every rank receives
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
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

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


# --- run directory -----------------------------------------------------------
def init_run(init: Callable[..., Any], **kwargs) -> None:
    """edflow's ``run.init(**kwargs)`` for this process: only rank 0 creates the run directory.

    Starts the process group first. Rank 0 (and a single process) initialises
    the run as asked; every other rank initialises a fresh run in a throwaway
    directory that is removed when the process exits, copies no code, commits
    nothing and logs warnings only. What those ranks write (logs, evaluation
    outputs) lands there; checkpoints and results are rank 0's alone.
    """
    setup()
    if is_main_process():
        init(**kwargs)
        return
    throwaway = tempfile.mkdtemp(prefix=f"invproto-rank{rank()}-")
    atexit.register(shutil.rmtree, throwaway, ignore_errors=True)
    init(**{**kwargs, "log_dir": throwaway, "run_dir": None, "code_root": None, "git": False,
            "log_level": "warn"})


# --- data --------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world_size``: which examples of every global batch this process takes."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def this_process(cls) -> "Shard":
        return cls(rank(), world_size())

    def local_batch_size(self, global_batch_size: int) -> int:
        """Examples per rank of a global batch; stops the run when the processes cannot share it evenly."""
        if global_batch_size % self.world_size:
            raise SystemExit(f"invproto: batch_size {global_batch_size} is the global batch and cannot be split "
                             f"evenly over {self.world_size} processes; set batch_size to a multiple of "
                             f"{self.world_size}")
        return global_batch_size // self.world_size

    def epoch_order(self, order: np.ndarray, global_batch_size: int) -> np.ndarray:
        """This rank's examples of an epoch whose global example order is ``order``, batch after batch.

        ``order`` is padded with its own first examples to a multiple of
        ``world_size`` (as ``torch.utils.data.DistributedSampler`` pads), so
        that every global batch of ``global_batch_size`` -- the last one may
        be smaller -- splits into ``world_size`` equal contiguous slices; rank
        r takes slice r of each. The ranks' parts are disjoint but for the
        padding, together they are the epoch, and the ranks' slices of a batch
        in rank order are that global batch.
        """
        if self.world_size == 1:
            return order
        self.local_batch_size(global_batch_size)
        padded = np.resize(order, -(-len(order) // self.world_size) * self.world_size)
        batches = np.split(padded, range(global_batch_size, len(padded), global_batch_size))
        return np.concatenate([batch.reshape(self.world_size, -1)[self.rank] for batch in batches])


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


# --- training ------------------------------------------------------------------
class TrainingStep(nn.Module):
    """A training step as a module, for DistributedDataParallel to wrap.

    DDP averages the gradients of the parameters of the module it wraps, in
    the backward pass of what its ``forward`` returned. Iterators reach their
    model in many ways -- ``model(x)``, ``model.encode(x)``, ``model.flow(x)``
    -- so the whole step is the forward: ``step(batch)`` returns ``(loss,
    scalars)``. The parameters are the model's and the other ones ``optimized``
    (a loss's learned variance, say); the model's buffers come along, so DDP
    keeps them equal to rank 0's.
    """

    def __init__(self, step: Callable, model: nn.Module, optimized: Iterable[nn.Parameter]):
        super().__init__()
        self.model = model
        in_model = {id(p) for p in model.parameters()}
        self.others = nn.ParameterList([p for p in optimized if id(p) not in in_model])
        self.step = step

    def forward(self, batch):
        return self.step(batch)


def replicate(step: Callable, model: nn.Module, optimized: Iterable[nn.Parameter],
              find_unused_parameters: bool = False) -> nn.Module | None:
    """``step`` wrapped in DistributedDataParallel (None with one process, or nothing to train).

    On CUDA the model's BatchNorm layers become SyncBatchNorm first, so batch
    statistics are those of the global batch; on the CPU (where SyncBatchNorm
    does not run) each rank normalises with its own part, and DDP copies rank
    0's running statistics to the others before every step. Only a step that
    leaves some trained parameters without a gradient needs
    ``find_unused_parameters``: DDP then walks the autograd graph after every
    forward, which costs time.
    """
    if not is_distributed():
        return None
    module = TrainingStep(step, model, optimized)
    if not any(p.requires_grad for p in module.parameters()):
        return None
    setup()
    if torch.cuda.is_available():
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(module, device_ids=[local_rank()],
                                                   find_unused_parameters=find_unused_parameters)
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)
