"""Batches for edflow's loops: whole batches for in-memory arrays, one shard per rank under torchrun.

edflow batches through chainer's ``MultiprocessIterator``: every example is
built by ``get_example`` in a worker process, pickled back one by one and
collated -- about 25k MNIST examples/s on two cores, eight times slower than a
``torch.utils.data.DataLoader``. A dataset whose examples are slices of
in-memory arrays can instead build a whole batch with one fancy index
(``dataset.get_batch(indices)``); :func:`make_batches` then uses
:class:`ArrayBatches`, and chainer's iterator for every other dataset.
:mod:`invproto.compat` installs :func:`make_batches` as edflow's.

Semantics match what edflow's loops expect: ``next`` returns a dict of
arrays with ``index_``, ``len`` is the number of batches per epoch,
``is_new_epoch`` is true right after an epoch's last batch, ``reset`` starts
a new epoch. Each epoch visits every example exactly once (the last batch
may be smaller). The order of each epoch is a permutation drawn from its own
generator (:class:`EpochOrders`), seeded by one draw from NumPy's global
generator, which invproto seeds from the config's ``seed``.

Under torchrun ``batch_size`` is the global batch (:mod:`invproto.distributed`):
every rank draws the same order of each epoch and takes its ``batch_size /
world_size`` examples of each global batch (:meth:`Shard.epoch_order`), so the
ranks' parts of a batch, in rank order, are the batch one process would see.
Datasets without ``get_batch`` go through chainer's iterator with
:class:`ShardOrderSampler` feeding it the rank's order of each epoch; a single
process keeps chainer's own shuffling there.
"""

from __future__ import annotations

import math

import numpy as np
from edflow.iterators.batches import Iterator as ChainerBatches

from invproto.data.sharding import Shard
from invproto.distributed import broadcast_from_main


def shared_seed() -> int:
    """A seed for the example orders: a draw from NumPy's global generator, rank 0's under torchrun."""
    return broadcast_from_main(int(np.random.randint(2 ** 31)))


class EpochOrders:
    """Example orders of a dataset of ``n`` examples, this rank's part of each.

    The order with key ``(k1, k2, ...)`` is the permutation of ``range(n)``
    drawn from ``numpy.random.default_rng([seed, k1, k2, ...])`` --
    ``range(n)`` itself without shuffling -- the same on every rank; this rank
    gets its shard of it for global batches of ``global_batch_size``.
    """

    def __init__(self, n: int, global_batch_size: int, shuffle: bool, seed: int, shard: Shard):
        self.n, self.global_batch_size, self.shuffle, self.seed, self.shard = n, global_batch_size, shuffle, seed, shard

    def __call__(self, *key: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, *key]).permutation(self.n) if self.shuffle else np.arange(self.n)
        return self.shard.epoch_order(order, self.global_batch_size)


class ArrayBatches:
    """Whole batches of an in-memory dataset (one with ``get_batch``); the ``n``-th epoch has order key ``(n,)``.

    ``batch_size`` is the global batch; ``seed`` defaults to :func:`shared_seed`,
    ``shard`` to this process's.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool, seed: int | None = None,
                 shard: Shard | None = None):
        self.dataset = dataset
        shard = shard or Shard.this_process()
        self.batch_size = shard.local_batch_size(batch_size)
        self.orders = EpochOrders(len(dataset), batch_size, shuffle, shared_seed() if seed is None else seed, shard)
        self.epoch = 0
        self._epochs_drawn = 0
        self._skip_at_next_reset = 0
        self.reset()

    def reset(self) -> None:
        self._order = self.orders(self._epochs_drawn)
        self._epochs_drawn += 1
        self._position = min(self._skip_at_next_reset, len(self._order))
        self._skip_at_next_reset = 0
        self.is_new_epoch = False

    def resume_at(self, draw: int, skip: int) -> None:
        """Make the next :meth:`reset` draw order number ``draw`` (key ``(draw,)``) and start ``skip`` examples
        into it, so that a resumed run sees the batches an uninterrupted one would (then as usual)."""
        self._epochs_drawn = draw
        self._skip_at_next_reset = skip

    def __len__(self) -> int:
        return math.ceil(len(self._order) / self.batch_size)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._position >= len(self._order):
            self.reset()
        indices = self._order[self._position:self._position + self.batch_size]
        self._position += len(indices)
        self.is_new_epoch = self._position >= len(self._order)
        if self.is_new_epoch:
            self.epoch += 1
        return {**self.dataset.get_batch(indices), "index_": indices}

    def finalize(self) -> None:
        """Nothing to release (no worker processes)."""


class _KeyedOrder(np.ndarray):
    """An epoch order that remembers its key in :class:`EpochOrders`."""

    key: tuple[int, int] | None = None


class ShardOrderSampler:
    """chainer order sampler: this rank's order of each epoch (:class:`EpochOrders`).

    chainer asks for an order when its iterator is reset -- edflow resets at
    the start of every epoch -- and, in its prefetch thread and possibly ahead
    of time, whenever an epoch runs out. So that all ranks draw the same
    epochs whatever the timing of their threads, the key of an order is
    ``(resets so far, epochs since that reset)``, the latter read from the
    order that ran out.
    """

    def __init__(self, orders: EpochOrders):
        self.orders = orders
        self.resets = 0

    def __call__(self, current_order: np.ndarray, current_position: int) -> np.ndarray:
        previous = getattr(current_order, "key", None)
        if previous is None:  # chainer's reset() passes range(len(dataset))
            key = (self.resets, 0)
            self.resets += 1
        else:
            key = (previous[0], previous[1] + 1)
        order = self.orders(*key).view(_KeyedOrder)
        order.key = key
        return order


class ShardBatches(ChainerBatches):
    """edflow's chainer iterator over this rank's shard of each epoch (``batch_size`` is the global batch)."""

    def __init__(self, dataset, batch_size: int, shuffle: bool, n_processes: int, n_prefetch: int,
                 seed: int | None = None, shard: Shard | None = None):
        shard = shard or Shard.this_process()
        orders = EpochOrders(len(dataset), batch_size, shuffle, shared_seed() if seed is None else seed, shard)
        super().__init__(dataset, repeat=True, batch_size=shard.local_batch_size(batch_size),
                         n_processes=n_processes, n_prefetch=n_prefetch, order_sampler=ShardOrderSampler(orders))

    @property
    def n(self) -> int:
        """Examples of an epoch on this rank (edflow's ``len`` is ``ceil(n / batch_size)``)."""
        return self._epoch_size


def make_batches(dataset, batch_size, shuffle, n_processes=8, n_prefetch=1, error_on_timeout=False):
    """edflow's ``make_batches`` with the whole-batch path for array datasets and a shard per rank under torchrun."""
    if getattr(dataset, "get_batch", None) is not None:
        return ArrayBatches(dataset, batch_size, shuffle)
    if Shard.this_process().world_size > 1:
        return ShardBatches(dataset, batch_size, shuffle, n_processes, n_prefetch)
    return ChainerBatches(dataset, repeat=True, batch_size=batch_size, n_processes=n_processes,
                          n_prefetch=n_prefetch, shuffle=shuffle)
