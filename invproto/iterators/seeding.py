"""Random draws keyed by where they happen (seed, global step, rank, batch), so that a resumed or repeated run
draws the numbers an uninterrupted one would."""

from __future__ import annotations

import torch

from invproto import distributed


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by the integers ``key``: equal keys give equal draws in any process.

    The key is hashed as a tuple (Python's int and tuple hashes do not depend on ``PYTHONHASHSEED``), so
    neighbouring keys such as (seed 0, step 5) and (seed 5, step 0) do not share a stream, as ``seed + step``
    would.
    """
    return torch.Generator().manual_seed(hash(key) & 0xFFFF_FFFF)


def step_generator(iterator) -> torch.Generator:
    """The draws of ``iterator``'s current training step (augmentations, sampled codes): keyed by (run seed,
    global step, rank), so that a resumed run draws what an uninterrupted one would and ranks differ."""
    return keyed_generator(iterator.settings.seed, iterator.get_global_step(), distributed.rank())
