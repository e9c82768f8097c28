"""A resumed run trains with the config of this call, not with the hyperparameters inside the checkpoint.

``optimizer.load_state_dict`` replaces every parameter group's ``lr``,
``initial_lr``, ``betas``, ``weight_decay`` ... with the values the run had
when the checkpoint was written, and ``LambdaLR.load_state_dict`` its
``base_lrs``; so ``edflow -p <run> -t --optimizer/lr 1e-4`` used to train at
the old rate. :func:`keep_configured_hyperparameters` wraps a restore: it notes
the hyperparameters the iterator built from this call's config, lets the
checkpoint restore the optimizers' state (moments, step counts) and the
schedules' position, then puts the configured values back and recomputes
each scheduled rate at the restored step. The schedule's length follows this
call's ``num_steps`` already: its lambda reads it from the config.
"""

from __future__ import annotations

import contextlib

import torch

LRScheduler = torch.optim.lr_scheduler.LRScheduler


def _members(iterator, kind: type) -> list:
    return [value for value in vars(iterator).values() if isinstance(value, kind)]


@contextlib.contextmanager
def keep_configured_hyperparameters(iterator):
    """Around a restore: the iterator's optimizers and LambdaLR schedules keep their configured hyperparameters."""
    optimizers = _members(iterator, torch.optim.Optimizer)
    schedules = _members(iterator, LRScheduler)
    groups = [[{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
              for opt in optimizers]
    base_lrs = [list(schedule.base_lrs) for schedule in schedules]
    yield
    for optimizer, configured in zip(optimizers, groups):
        for group, values in zip(optimizer.param_groups, configured):
            group.update(values)
    for schedule, configured in zip(schedules, base_lrs):
        schedule.base_lrs = configured
        if isinstance(schedule, torch.optim.lr_scheduler.LambdaLR):
            for group, base, factor in zip(schedule.optimizer.param_groups, configured, schedule.lr_lambdas):
                group["lr"] = base * factor(schedule.last_epoch)
            schedule._last_lr = [group["lr"] for group in schedule.optimizer.param_groups]
