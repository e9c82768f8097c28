"""Feature extraction shared by the processes of a ``torchrun`` job.

Rank ``r`` of ``w`` extracts the features of the images :func:`shard` gives
it -- a contiguous block of ``range(n)`` -- and :func:`gather_features`
concatenates the blocks in rank order on rank 0, which restores the order of
the images: rank 0 then holds exactly the (N, D) array one process would have
extracted, so FID and the seeded KID subsets come out the same.

Both are the identity with one process (``shard(n, 0, 1) == range(n)``).
They need every rank to take part: the evaluation callbacks must run on all
ranks, each with the same images (see :mod:`invproto.iterators.base`).
"""

from __future__ import annotations

import numpy as np

from invproto import distributed


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
