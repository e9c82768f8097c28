"""``edflow -p logs/<run> [-t]`` without ``-b``: reuse the run's own config.

Plain edflow starts such a call from an empty config and fails. invproto
loads the newest ``<run>/configs/train_*.yaml`` that edflow saved when the run
trained, then applies the ``--key/sub value`` overrides of this call on top.
Wired into edflow by :mod:`invproto.compat`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

_EDFLOW_DEFAULT_MODEL = "edflow.util.NoModel"


def deep_update(base: dict, overrides: dict) -> dict:
    """Recursively write ``overrides`` into ``base`` (nested dicts merge, leaves replace)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def complete_from_run(config: dict) -> None:
    """If ``config`` came from ``-p <run>`` alone, fill it from the run's saved config (in place)."""
    from edflow.custom_logging import run

    if "iterator" in config or not getattr(run, "resumed", False):
        return
    saved = sorted(Path(run.configs).glob("train_*.yaml"))
    if not saved:
        raise SystemExit(f"invproto: {run.root} has no saved config (configs/train_*.yaml); "
                         f"pass one with -b <config.yaml>")
    overrides = {k: v for k, v in config.items() if not (k == "model" and v == _EDFLOW_DEFAULT_MODEL)}
    restored = deep_update(yaml.safe_load(saved[-1].read_text()), overrides)
    config.clear()
    config.update(restored)


def refuse_evaluation_without_checkpoint(config: dict, checkpoint: str | None) -> None:
    """``edflow -p <run>`` (evaluation) of a run with no checkpoint stops in one line, leaving nothing behind.

    Without it edflow would evaluate randomly initialised weights and record
    the scores as the run's ``final``. Evaluations of every checkpoint
    (``eval_all`` / ``eval_forever``) choose their checkpoints themselves.
    """
    from edflow.custom_logging import run

    from invproto.config.run import abort_cleanly

    if checkpoint is not None or not getattr(run, "resumed", False):
        return
    if config.get("eval_all") or config.get("eval_forever"):
        return
    with abort_cleanly():
        raise SystemExit(f"invproto: {run.root} has no checkpoint in {run.checkpoints} to evaluate; "
                         "train it first (edflow -p <run> -t) or pass one with -c <checkpoint>")
