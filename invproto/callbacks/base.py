"""What every invproto evaluation callback does besides computing its metrics.

edflow calls evaluation callbacks after each training epoch (and in
``edflow -p``) as ``callback(root, data_in, data_out, config)`` where ``root``
is ``<run>/eval/<time>/<step>``, ``data_in`` the validation dataset and
``data_out`` the model outputs (``data_out.labels[key]`` holds what the
iterator's ``eval_op`` returned under ``labels``).

:func:`evaluation_callback` turns a function returning ``{metric: float}``
into such a callback that also prints the metrics, records them in
``results/scores.yaml`` and ``metrics.csv`` (edflow logs nothing in ``-p``
mode), and returns ``{"scalars": metrics}`` so that during training edflow
logs them (to wandb too when it is active); in ``edflow -p`` they go to the
evaluation's own wandb run as ``evaluation/<metric>`` (:func:`log_to_wandb`).

Under ``torchrun`` every rank runs every callback on the same outputs (those
of all ranks, :mod:`invproto.iterators.base`), so that callbacks sharing
their work -- FID/KID, :mod:`invproto.fid.sharding` -- meet in the same
collectives. Rank 0 alone records and prints: on the other ranks the callback
still calls ``compute`` (for its collectives; the metrics it returns there,
``{}`` for FID/KID, are dropped), writes nothing and returns
``{"scalars": {}}``. A ``compute`` that writes files itself (into ``root``,
say) does so on rank 0 only (:func:`invproto.distributed.is_main_process`).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Mapping

from invproto import distributed
from invproto.artifacts import RunArtifacts, current_run_root

MetricsFn = Callable[..., Mapping[str, float]]


def evaluation_callback(compute: MetricsFn) -> Callable:
    @functools.wraps(compute)
    def callback(root, data_in, data_out, config, **kwargs):
        metrics = {k: float(v) for k, v in compute(root, data_in, data_out, config, **kwargs).items()}
        if not metrics or not distributed.is_main_process():
            # nothing applies to this model (e.g. sample FID of a model that cannot decode), or another rank
            # than 0 under torchrun: it took part in compute's collectives, rank 0 records the metrics
            return {"scalars": {}}
        step = int(Path(root).name)
        evaluation = bool(config.get("test_mode", False))
        context = {"dataset": config["datasets"]["validation"]}
        artifacts = RunArtifacts(current_run_root())
        artifacts.add_scores(step, metrics, evaluation=evaluation, context=context)
        artifacts.append_metrics(
            {"step": step, "phase": "evaluation" if evaluation else "epoch_end", **metrics})
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        print(f"invproto: {compute.__name__} at step {step} on {context['dataset']}: {shown}", flush=True)
        if evaluation:  # edflow logs the returned scalars during training only
            log_to_wandb(metrics, step)
        return {"scalars": metrics}

    return callback


def open_wandb():
    """The ``wandb`` module when this process has a wandb run open, else None (wandb is imported only when the
    integration is active)."""
    wandb = sys.modules.get("wandb")
    return wandb if wandb is not None and wandb.run is not None else None


def log_to_wandb(metrics: Mapping[str, float], step: int) -> None:
    """``evaluation/<metric>`` at ``step`` in the open wandb run, if there is one (``edflow -p`` with
    ``integrations.wandb``, :mod:`invproto.iterators.wandb_evaluation`)."""
    wandb = open_wandb()
    if wandb is not None:
        wandb.log({f"evaluation/{name}": value for name, value in metrics.items()}, step=step)
