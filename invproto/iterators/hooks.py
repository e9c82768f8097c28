"""edflow hooks every invproto iterator installs (:class:`invproto.iterators.base.Iterator`)."""

from __future__ import annotations

import sys
from pathlib import Path

from edflow.custom_logging import run
from edflow.hooks.hook import Hook


class StopOnSignalHook(Hook):
    """After a training step (and its checkpoint hook): on SIGINT/SIGTERM, save this step's state and stop."""

    def __init__(self, iterator):
        self.iterator = iterator

    def after_step(self, step, last_results):
        iterator = self.iterator
        if iterator.get_split() != "train" or not iterator.stop_signals.requested():
            return
        path = Path(iterator.ckpthook.savename.format(iterator.get_global_step()))
        if not path.is_file():
            iterator.save(str(path))
        print(f"invproto: stopped by {iterator.stop_signals.describe()} after step {iterator.get_global_step()}; "
              f"its state is in {path}; resume with edflow -p {run.root} -t", file=sys.stderr, flush=True)
        raise SystemExit(iterator.stop_signals.exit_status())


class ModelInfoHook(Hook):
    """Rewrites ``results/model_info.yaml`` after every epoch."""

    def __init__(self, iterator):
        self.iterator = iterator

    def after_epoch(self, epoch):
        self.iterator.artifacts.write_model_info(self.iterator.model_info())
