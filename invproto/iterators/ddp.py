"""The training step under torchrun: one DistributedDataParallel module per run.

Under ``torchrun`` (:mod:`invproto.distributed`) nothing changes for a
subclass of :class:`invproto.iterators.base.Iterator`. ``self.model`` stays
the plain model; the training step runs as the forward of a
DistributedDataParallel module holding the model and every other parameter of
``self.optimizer`` (:func:`replicate`), so gradients are averaged over the
ranks however :meth:`train_step` reaches the model. Other optimizers the
iterator builds in :meth:`build_components` (a GAN discriminator's, say)
average their gradients over the ranks before each step. Each rank sees
``batch_size / world_size`` examples of every global batch; logged scalars are
means over the ranks. Every rank receives the evaluation outputs of all ranks
(an all-gather after each evaluation step, :func:`gather_outputs`) and runs the evaluation callbacks
on them: callbacks that share their work between the ranks (FID/KID, each rank
passing its share of the images through Inception,
:mod:`invproto.fid.sharding`) meet in the same collectives, the others compute
the same metrics on every rank, which costs no time (those ranks would
otherwise wait for rank 0). Rank 0 alone records the scores
(:func:`~invproto.callbacks.base.evaluation_callback`) and writes checkpoints,
wandb and ``results/``; the other ranks save nothing and log into a throwaway
directory. After the setup each rank reseeds torch with ``seed + rank``, so
random augmentations and sampling noise differ between ranks as they would
between the examples of one batch.

With one process there is nothing to wrap (:func:`replicate` returns None)
and the iterator calls its step directly.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from invproto import distributed


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
    if not distributed.is_distributed():
        return None
    module = TrainingStep(step, model, optimized)
    if not any(p.requires_grad for p in module.parameters()):
        return None
    distributed.setup()
    if torch.cuda.is_available():
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(module, device_ids=[distributed.local_rank()],
                                                   find_unused_parameters=find_unused_parameters)
    return nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)


def average_gradients_before_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Optimizer step pre-hook: the gradients of ``optimizer``'s parameters, averaged over the ranks."""
    distributed.average_gradients(p for group in optimizer.param_groups for p in group["params"])


def gather_outputs(evalhook, outputs: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
    """The evaluation outputs of the whole global batch, on every rank, for edflow's evaluation hook to store.

    The hook (``evalhook``) stores outputs at the dataset indices it read from
    the batch before the step (``idxs``); these become the indices of all
    ranks, in rank order. So every rank ends the evaluation with the outputs
    one process would have, and runs the callbacks on them.
    """
    gathered = distributed.all_gather((indices, outputs))
    evalhook.idxs = np.concatenate([np.asarray(i, dtype=int) for i, _ in gathered])
    return {key: np.concatenate([part[key] for _, part in gathered]) for key in outputs}
