"""wandb for ``edflow -p``: evaluations join their training run's dashboard.

edflow starts wandb only for training (``-t``); an evaluation (``-p``) logged
nothing there, so test FID, accuracy and factor dimensionalities never reached
the dashboard. With ``integrations.wandb.active`` (``configs/project.yaml``),
:func:`start_evaluation_run` opens a wandb run for the evaluation, named
``<run>-eval-<time>`` in the group ``<run>`` (the training run's directory name,
which is also the training's wandb run id) with job type ``evaluation``; the
evaluation callbacks then log ``evaluation/<metric>`` at the checkpoint's step
(:func:`invproto.callbacks.base.log_to_wandb`), and the iterator finishes the run at the end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

from invproto.callbacks.base import open_wandb


def start_evaluation_run(config: Mapping, run_root: str) -> None:
    """Open the evaluation's wandb run when the config asks for wandb (rank 0 only: the caller checks)."""
    settings = (config.get("integrations") or {}).get("wandb") or {}
    if not settings.get("active"):
        return
    import wandb

    run = Path(run_root).resolve().name
    wandb.init(name=f"{run}-eval-{time.strftime('%Y-%m-%dT%H-%M-%S')}", group=run, job_type="evaluation",
               project=settings.get("project"), entity=settings.get("entity"), dir=str(run_root),
               config=dict(config))


def finish_wandb() -> None:
    """Finish the open wandb run (training's or evaluation's), if there is one."""
    wandb = open_wandb()
    if wandb is not None:
        wandb.finish()
