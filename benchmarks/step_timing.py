"""Seconds per training step under edflow and in a plain PyTorch loop: the two sides of a speed ratio.

edflow's time per step is the difference of two CLI runs of ``short`` and
``long`` steps divided by ``long - short``, which cancels start-up, data
loading and the epoch-end evaluation. The plain loop trains the same model
with the same optimizer and schedule on the same dataset object, read by a
``torch.utils.data.DataLoader`` with as many workers as invproto gives edflow.
The ratio is taken against the mean of a plain timing before and after the
edflow runs, so drift of the machine's speed shows up in the pair.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable

import torch

from benchmarks.results_io import write_result
from benchmarks.runs import edflow
from invproto.config.schema import OptimizerParams
from invproto.iterators.optimization import build_optimizer, build_schedule


def plain_seconds_per_step(model: torch.nn.Module, parameters: Iterable[torch.nn.Parameter],
                           loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           dataset, config: dict, steps: int, warmup: int = 10) -> float:
    """Seconds per step of ``loss_of(images (N, C, H, W), labels (N,))`` minimised over ``parameters``.

    ``config`` supplies ``batch_size`` and the ``optimizer`` block; the
    images go to the model's device. The first ``warmup`` steps are not timed.
    """
    device = next(model.parameters()).device
    optimizer_params = OptimizerParams(**config["optimizer"])
    optimizer = build_optimizer(parameters, optimizer_params)
    schedule = build_schedule(optimizer, warmup + steps, optimizer_params)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config["batch_size"], shuffle=True,
                                         num_workers=os.cpu_count(), persistent_workers=True)
    batches = iter(loader)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        batch = next(batches)
        images = batch["image"].permute(0, 3, 1, 2).contiguous().to(device)
        loss = loss_of(images, batch["class"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def edflow_seconds_per_step(config: str, overrides: list[str], short: int, long: int, name: str) -> float:
    """Seconds per step of ``edflow -b config -t *overrides``, from runs of ``short`` and ``long`` steps."""
    walls = {}
    for steps in (short, long):
        walls[steps], _ = edflow("-b", config, "-t", *overrides, "--num_steps", str(steps), "-n", f"{name}_{steps}")
    return (walls[long] - walls[short]) / (long - short)


def write_step_ratio(name: str, plain: Callable[[], float], under_edflow: Callable[[], float],
                     steps: int, batch_size: int, **extra) -> float:
    """Time plain, edflow, plain again; write ``name`` = edflow s/step / mean plain s/step (target 1.10)."""
    start = time.perf_counter()
    plain_before = plain()
    edflow_step = under_edflow()
    plain_after = plain()
    ratio = edflow_step / ((plain_before + plain_after) / 2)
    write_result(name, round(ratio, 3), "x (edflow s/step / plain s/step)", 1.10, time.perf_counter() - start,
                 steps=steps, edflow_s_per_step=round(edflow_step, 4), plain_s_per_step_before=round(plain_before, 4),
                 plain_s_per_step_after=round(plain_after, 4), batch_size=batch_size, **extra)
    return ratio
