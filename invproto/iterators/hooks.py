"""edflow hooks every invproto iterator installs (:class:`invproto.iterators.base.Iterator`)."""

from __future__ import annotations

from pathlib import Path

from edflow.custom_logging import run
from edflow.hooks.hook import Hook

from invproto.errors import TrainingStopped


class StopOnSignalHook(Hook):
    """After a training step (and its checkpoint hook): on SIGINT/SIGTERM, save this step's state and stop.

    edflow names a checkpoint by the steps done: ``model-<n>.ckpt`` holds the
    state after ``n`` optimizer steps, and training resumes with step ``n``.
    This hook runs after the optimizer step of global step ``g`` (which edflow
    increments only after the hooks), so it saves ``model-<g + 1>.ckpt``.

    It stops with :class:`~invproto.errors.TrainingStopped`, whose exit status
    in the ``edflow`` command is 128 + the signal (130, 143).
    """

    def __init__(self, iterator):
        self.iterator = iterator

    def after_step(self, step, last_results):
        iterator = self.iterator
        if iterator.get_split() != "train" or not iterator.stop_signals.requested():
            return
        done = iterator.get_global_step() + 1
        path = Path(iterator.ckpthook.savename.format(done))
        if not path.is_file():
            iterator.save(str(path))
        raise TrainingStopped(f"stopped by {iterator.stop_signals.describe()} after {done} steps; its state is in "
                              f"{path}; resume with edflow -p {run.root} -t", iterator.stop_signals.exit_status())


class ModelInfoHook(Hook):
    """Rewrites ``results/model_info.yaml`` after every epoch."""

    def __init__(self, iterator):
        self.iterator = iterator

    def after_epoch(self, epoch):
        self.iterator.artifacts.write_model_info(self.iterator.model_info())
