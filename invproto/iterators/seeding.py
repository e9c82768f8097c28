"""Random draws keyed by where they happen (seed, global step, rank, batch), so that a resumed or repeated run
draws the numbers an uninterrupted one would."""

from __future__ import annotations

import torch


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by the integers ``key``: equal keys give equal draws in any process.

    The key is hashed as a tuple (Python's int and tuple hashes do not depend on ``PYTHONHASHSEED``), so
    neighbouring keys such as (seed 0, step 5) and (seed 5, step 0) do not share a stream, as ``seed + step``
    would.
    """
    return torch.Generator().manual_seed(hash(key) & 0xFFFF_FFFF)
