"""``edflow -p logs/<run> [-t]`` without ``-b``: reuse the run's own config.

Plain edflow starts such a call from an empty config and fails. invproto
loads the newest ``<run>/configs/train_*.yaml`` that edflow saved when the run
trained, then applies the ``--key/sub value`` overrides of this call on top
and prints one line per value they change (``invproto: changed: optimizer.lr
0.001 -> 0.0001``). The iterator then trains with them: see
:mod:`invproto.iterators.resume_overrides` for what a checkpoint would
otherwise restore.

edflow saves both ``num_steps`` and ``num_epochs`` and, when both are set,
derives the epochs from the steps; so ``--num_epochs N`` alone drops the saved
``num_steps`` (edflow then derives it from ``N``) and a finished run trains
its extra epochs. Wired into edflow by :mod:`invproto.compat`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import yaml

from invproto.artifacts import RunArtifacts
from invproto.errors import RunError

_EDFLOW_DEFAULT_MODEL = "edflow.util.NoModel"


def deep_update(base: dict, overrides: dict) -> dict:
    """Recursively write ``overrides`` into ``base`` (nested dicts merge, leaves replace)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def complete_from_run(config: dict, training: bool) -> None:
    """If ``config`` came from ``-p <run>`` alone, fill it from the run's saved config (in place).

    When ``training`` (``-t``), every value the command line changes is announced on stderr.
    """
    from edflow.custom_logging import run

    if "iterator" in config or not getattr(run, "resumed", False):
        return
    saved = RunArtifacts(run.root).newest_train_config()
    if saved is None:
        raise RunError(f"{run.root} has no saved config (configs/train_*.yaml); pass one with -b <config.yaml>")
    overrides = {k: v for k, v in config.items() if not (k == "model" and v == _EDFLOW_DEFAULT_MODEL)}
    restored = yaml.safe_load(saved.read_text())
    for key, before, after in changes(restored, overrides) if training else ():
        print(f"invproto: changed: {key} {before} -> {after}", file=sys.stderr, flush=True)
    if "num_epochs" in overrides and "num_steps" not in overrides:
        restored.pop("num_steps", None)  # else edflow derives num_epochs from the saved num_steps
    config.clear()
    config.update(deep_update(restored, overrides))


def changes(saved: dict, overrides: dict, prefix: str = "") -> Iterator[tuple[str, object, object]]:
    """``(dotted key, saved value, new value)`` for every leaf of ``overrides`` that differs from ``saved``."""
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        before = saved.get(key, "(unset)") if isinstance(saved, dict) else "(unset)"
        if isinstance(value, dict) and isinstance(before, dict):
            yield from changes(before, value, f"{name}.")
        elif before != value:
            yield name, before, value


def refuse_evaluation_without_checkpoint(project: str, config: dict) -> None:
    """``edflow -p <run>`` (evaluation, no ``-c``) of a run with no checkpoint stops in one line.

    Checked before edflow starts (:mod:`invproto.config.command_line`), so
    nothing is written. Without it edflow would evaluate randomly initialised
    weights and record the scores as the run's ``final``. Evaluations of every
    checkpoint (``eval_all`` / ``eval_forever``) choose their checkpoints themselves.
    """
    if config.get("eval_all") or config.get("eval_forever"):
        return
    from invproto.io import latest_checkpoint  # imported only now: it imports torch (seconds)

    checkpoints = Path(project) / "train" / "checkpoints"
    if latest_checkpoint(checkpoints) is None:
        raise RunError(f"{project} has no checkpoint in {checkpoints} to evaluate; "
                       "train it first (edflow -p <run> -t) or pass one with -c <checkpoint>")
