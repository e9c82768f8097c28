"""What every invproto run does once, before its first step.

edflow builds datasets, then the model, then the iterator, each from the same
config dict. Whichever invproto object comes first calls :func:`prepare_run`:

1. validate the stacked config (:func:`validate_run_config`); under torchrun
   ``batch_size`` is the global batch and must split evenly over the
   processes (:mod:`invproto.distributed`),
2. seed Python, NumPy and torch from ``seed`` (before the model's weights are
   drawn and before edflow's batcher shuffles) -- the same on every rank,
3. default ``n_data_processes`` to the machine's core count, shared by the
   processes torchrun started on it.

If the run must stop (an :class:`~invproto.errors.InvprotoError`: bad config, missing data), :func:`abort_cleanly`
removes what this invocation just created under ``logs/`` -- a fresh run
directory without checkpoints, or the new ``eval/<time>`` folder of a resumed
run -- so no debris is left behind. Nothing older is ever removed.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from omegaconf import DictConfig

from invproto.config.schema import DataParams
from invproto.config.validation import check_section, validate_run_config
from invproto.errors import InvprotoError

_prepared: tuple[Mapping, DictConfig] | None = None


def prepare_run(config: dict) -> DictConfig:
    """Validate, seed and complete ``config`` once; return its typed view."""
    global _prepared
    if _prepared is not None and _prepared[0] is config:
        return _prepared[1]
    with abort_cleanly():
        view = validate_run_config(config)
        # imported only now: it imports torch (seconds), and a config error must not wait for that
        from invproto.distributed import local_batch_size, world_size

        if "batch_size" in config:  # training and evaluation configs (edexplore's need none)
            local_batch_size(config["batch_size"])
    seed_everything(view.seed)
    if config.get("n_data_processes") is None:
        config["n_data_processes"] = max(1, (os.cpu_count() or 1) // world_size())
    _prepared = (config, view)
    return view


def data_params(config: Mapping) -> DataParams:
    """The validated ``data`` section (defaults filled in)."""
    return DataParams(**check_section(DataParams, config.get("data"), "data"))


def component_params(config: Mapping, section: str, component: type):
    """The validated ``section`` (e.g. ``dataset_params``) as ``component.Params``."""
    return component.Params(**check_section(component.Params, config.get(section), section))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def abort_cleanly():
    """On an :class:`~invproto.errors.InvprotoError` (or ``SystemExit``) inside, remove what this
    edflow invocation created, then re-raise."""
    try:
        yield
    except (InvprotoError, SystemExit):
        discard_fresh_run_directories()
        raise


def discard_fresh_run_directories() -> None:
    """Remove this invocation's fresh run directory (no checkpoints) or its ``eval/<time>`` folder when that
    holds nothing but edflow's ``log.txt``."""
    from edflow.custom_logging import run

    if not getattr(run, "exists", False):
        return
    root = Path(run.root)
    checkpoints = Path(run.checkpoints)
    if not run.resumed and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):  # logs/ itself, if this run was its first
            root.parent.rmdir()
    elif Path(run.latest_eval).is_dir() and all(path.name == "log.txt" for path in Path(run.latest_eval).iterdir()):
        shutil.rmtree(run.latest_eval, ignore_errors=True)  # nothing in it but edflow's log of this attempt
