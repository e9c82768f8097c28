"""Optimizer and learning-rate schedule from the ``optimizer`` config section.

Parameter groups with a rate of their own say so in one way only: a group
``{"params": ..., "lr_multiple": m}`` learns at ``m x optimizer.lr``, and the
schedule scales every group alike (iterators expose ``m`` as an
``iterator_params.<group>_lr_multiple`` key).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from invproto.config.schema import OptimizerParams
from invproto.config.validation import ConfigError


def build_optimizer(parameters: Iterable[torch.nn.Parameter] | Iterable[dict],
                    p: OptimizerParams) -> torch.optim.Optimizer:
    """The optimizer ``p.name`` at rate ``p.lr``; a group's ``lr_multiple`` scales its own rate."""
    parameters = [_with_own_rate(group, p.lr) if isinstance(group, dict) else group for group in parameters]
    if p.name == "adam":
        return torch.optim.Adam(parameters, lr=p.lr, betas=tuple(p.betas), weight_decay=p.weight_decay)
    if p.name == "adamw":
        return torch.optim.AdamW(parameters, lr=p.lr, betas=tuple(p.betas), weight_decay=p.weight_decay)
    if p.name == "sgd":
        return torch.optim.SGD(parameters, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    raise ConfigError(f"config key 'optimizer.name' must be adam, adamw or sgd, got '{p.name}'")


def _with_own_rate(group: dict, lr: float) -> dict:
    group = dict(group)
    multiple = group.pop("lr_multiple", None)
    if multiple is not None:
        group["lr"] = lr * multiple
    return group


def lr_factor(step: int, total_steps: int, p: OptimizerParams) -> float:
    """Multiplier of ``optimizer.lr`` at optimizer step ``step`` (0-based)."""
    if step < p.warmup_steps:
        return (step + 1) / p.warmup_steps
    if p.schedule == "constant":
        return 1.0
    if p.schedule == "cosine":
        progress = (step - p.warmup_steps) / max(1, total_steps - p.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if p.schedule == "linear":
        start = max(p.decay_start, p.warmup_steps)
        return 1.0 if step < start else max(0.0, 1.0 - (step - start) / max(1, total_steps - start))
    raise ConfigError(f"config key 'optimizer.schedule' must be constant, cosine or linear, got '{p.schedule}'")


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                   p: OptimizerParams) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, total_steps, p)  # fail early on an unknown schedule name
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, p))


def current_factor(schedule: torch.optim.lr_scheduler.LambdaLR) -> float:
    """The multiplier ``schedule`` applies to every group's base rate now."""
    return schedule.get_last_lr()[0] / schedule.base_lrs[0]
