"""Feature extraction shared by the processes of a ``torchrun`` job.

Rank ``r`` of ``w`` extracts the features of the images :func:`shard` gives
it -- a contiguous block of ``range(n)`` -- and :func:`gather_features`
concatenates the blocks in rank order on rank 0, which restores the order of
the images: rank 0 then holds exactly the (N, D) array one process would have
extracted, so FID and the seeded KID subsets come out the same.

:func:`extract_in_shards` does both around :meth:`InceptionFeatures.extract
<invproto.fid.features.InceptionFeatures.extract>`; it is how
:func:`~invproto.fid.compute_statistics` (and so the cached reference
statistics) and the FID/KID callbacks (:mod:`invproto.callbacks.fid`) extract
features.

All are the identity with one process (``shard(n, 0, 1) == range(n)``).
They need every rank to take part: the evaluation callbacks run on all ranks,
each with the same images (see :mod:`invproto.iterators.base`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from invproto import distributed
from invproto.fid.features import FEATURE_DIM, InceptionFeatures

Batches = Callable[[int, int], Iterable[torch.Tensor | np.ndarray]]  # (start, stop) -> those images, batch by batch


def shard(n: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous block of ``range(n)``; the first ``n % world_size`` ranks take one more.

    The blocks of ranks 0 .. world_size - 1, in order, are ``range(n)``; a
    rank's block is empty when ``n < world_size`` leaves nothing for it.
    """
    if n < 0 or not 0 <= rank < world_size:
        raise ValueError(f"no shard {rank} of {world_size} for {n} items (need n >= 0, 0 <= rank < world_size)")
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return range(start, start + size + (rank < extra))


def gather_features(local: np.ndarray) -> np.ndarray | None:
    """Every rank's (n_r, D) features, concatenated in rank order on rank 0; None on the other ranks."""
    parts = distributed.gather_to_main(np.asarray(local))
    return None if parts is None else np.concatenate(parts)


def extract_in_shards(features: InceptionFeatures, n: int, batches: Batches,
                      progress: bool = True) -> np.ndarray | None:
    """The (n, D) features of ``n`` images, each rank extracting its :func:`shard`: on rank 0, None on the others.

    ``batches(start, stop)`` yields images ``start .. stop - 1`` as
    :meth:`~invproto.fid.features.InceptionFeatures.extract` takes them. Every
    rank calls this with the same ``n`` and images. A rank whose block is empty
    runs no network and sends a (0, D) array; only rank 0 shows a progress bar
    (of its own block). With one process: ``features.extract(batches(0, n))``.
    """
    block = shard(n, distributed.rank(), distributed.world_size())
    if len(block):
        local = features.extract(batches(block.start, block.stop), total=len(block),
                                 progress=progress and distributed.is_main_process())
    else:
        local = np.empty((0, FEATURE_DIM), dtype=np.float32)
    return gather_features(local)
