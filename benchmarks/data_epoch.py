"""One MNIST training epoch: edflow's batching vs a plain torch DataLoader.

Both iterate the MNIST train split (55000 examples with the default
``data.validation_size``) once, in shuffled batches of 128:

* edflow: ``edflow.iterators.batches.make_batches`` over
  ``invproto.data.MNISTTrain`` as edflow calls it in training -- with
  invproto installed that is :mod:`invproto.data.batches`, which builds whole
  batches from the in-memory arrays;
* DataLoader: ``torch.utils.data.DataLoader`` (no worker processes) over a
  ``TensorDataset`` of the same images, already float32 in [-1, 1], and labels.

The figure is the ratio of examples per second, edflow / DataLoader (target
1.0). Diagnostics beside it: edflow's own batching (chainer's
``MultiprocessIterator``, ``n_processes`` = the core count as invproto
defaults ``n_data_processes``), and the same examples and collation without
worker processes (chainer's ``SerialIterator`` plus edflow's
``deep_lod2dol``) -- the difference between those two is the price of
chainer's worker pool: every example is a separate pool task
whose result is pickled back through a pipe (chainer's shared-memory path
never engages for dict examples: its ``_measure`` sums the dict's keys, not
its arrays), and one batch is assembled at a time.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.data_epoch
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from chainer.iterators import SerialIterator
from edflow.iterators.batches import Iterator, deep_lod2dol, make_batches
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.results_io import write_result
from invproto.data import MNISTTrain
from invproto.data.batches import ArrayBatches

COMMAND = "INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.data_epoch"
BATCH_SIZE = 128
REPEATS = 2  # the fastest of REPEATS epochs counts: the machine is shared
CONFIG = {
    "model": "torch.nn.Identity",
    "iterator": "edflow.iterators.template_iterator.TemplateIterator",
    "datasets": {"train": "invproto.data.MNISTTrain", "validation": "invproto.data.MNISTValidation"},
    "batch_size": BATCH_SIZE,
    "num_epochs": 1,
    "data": {"download": False},
}


def edflow_epoch(dataset) -> float:
    """Seconds for one epoch through ``make_batches``, as edflow's training calls it."""
    start = time.perf_counter()
    batches = make_batches(dataset, BATCH_SIZE, shuffle=True)
    assert isinstance(batches, ArrayBatches), "invproto's compatibility hook is not active"
    for _ in range(len(batches)):
        assert next(batches)["image"].shape[1:] == (28, 28, 1)
    assert batches.is_new_epoch
    return time.perf_counter() - start


def chainer_epoch(dataset, n_processes: int) -> float:
    """Seconds for one epoch through edflow's own batching, pool start-up included."""
    start = time.perf_counter()
    batches = Iterator(dataset, repeat=True, batch_size=BATCH_SIZE, n_processes=n_processes, shuffle=True)
    try:
        for _ in range(math.ceil(len(dataset) / BATCH_SIZE)):
            batch = next(batches)
            assert batch["image"].shape[1:] == (28, 28, 1)
    finally:
        batches.finalize()
    return time.perf_counter() - start


def serial_epoch(dataset) -> float:
    """Seconds for one epoch of the same examples and collation, no worker processes."""
    start = time.perf_counter()
    batches = SerialIterator(dataset, BATCH_SIZE, repeat=True, shuffle=True)
    for _ in range(math.ceil(len(dataset) / BATCH_SIZE)):
        batch = deep_lod2dol(next(batches))
        assert batch["image"].shape[1:] == (28, 28, 1)
    return time.perf_counter() - start


def dataloader_epoch(dataset) -> float:
    """Seconds for one epoch of a plain DataLoader over the same images as tensors."""
    images = torch.from_numpy(dataset.arrays.images.astype(np.float32) / 127.5 - 1.0)
    labels = torch.from_numpy(dataset.arrays.labels)
    loader = DataLoader(TensorDataset(images, labels), batch_size=BATCH_SIZE, shuffle=True)
    start = time.perf_counter()
    for batch_images, _ in loader:
        assert batch_images.shape[1:] == (28, 28, 1)
    return time.perf_counter() - start


def main() -> None:
    started = time.perf_counter()
    dataset = MNISTTrain(CONFIG)
    cores = os.cpu_count() or 1
    n = len(dataset)
    epochs = {
        "edflow": lambda: edflow_epoch(dataset),
        "edflow_chainer_multiprocess": lambda: chainer_epoch(dataset, cores),
        "edflow_collation_no_workers": lambda: serial_epoch(dataset),
        "dataloader": lambda: dataloader_epoch(dataset),
    }
    seconds = {name: min(epoch() for _ in range(REPEATS)) for name, epoch in epochs.items()}
    rate = {name: round(n / s) for name, s in seconds.items()}
    for name, value in rate.items():
        print(f"{name:>28}: {value:8d} examples/s ({seconds[name]:.2f} s)")
    write_result("data.mnist_epoch_ratio_vs_dataloader", round(rate["edflow"] / rate["dataloader"], 3), "x", 1.0,
                 time.perf_counter() - started, command=COMMAND, n_examples=n, batch_size=BATCH_SIZE, n_processes=cores,
                 examples_per_s=rate)


if __name__ == "__main__":
    main()
