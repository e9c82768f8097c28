"""Whole-batch iteration for datasets held in memory as arrays.

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
may be smaller); shuffling draws from NumPy's global generator, which
invproto seeds from the config's ``seed``.
"""

from __future__ import annotations

import math

import numpy as np


class ArrayBatches:
    def __init__(self, dataset, batch_size: int, shuffle: bool):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        n = len(self.dataset)
        self._order = np.random.permutation(n) if self.shuffle else np.arange(n)
        self._position = 0
        self.is_new_epoch = False

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

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


def make_batches(dataset, batch_size, shuffle, n_processes=8, n_prefetch=1, error_on_timeout=False):
    """edflow's ``make_batches`` with the whole-batch path for array datasets."""
    if getattr(dataset, "get_batch", None) is not None:
        return ArrayBatches(dataset, batch_size, shuffle)
    from edflow.iterators.batches import Iterator

    return Iterator(dataset, repeat=True, batch_size=batch_size, n_processes=n_processes,
                    n_prefetch=n_prefetch, shuffle=shuffle)
