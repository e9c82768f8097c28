"""Which examples of every global batch each torchrun process takes.

``batch_size`` in a config is the global batch. Every rank draws the same
example order of an epoch and takes its own contiguous slice of each global
batch, so the ranks' slices in rank order are the global batch
(:mod:`invproto.data.batches` reads the epoch through :class:`Shard`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from invproto import distributed


@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world_size``: which examples of every global batch this process takes."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def this_process(cls) -> "Shard":
        return cls(distributed.rank(), distributed.world_size())

    def local_batch_size(self, global_batch_size: int) -> int:
        """Examples per rank of a global batch (:func:`invproto.distributed.local_batch_size`)."""
        return distributed.local_batch_size(global_batch_size, self.world_size)

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
