"""Stages that chain without hand-editing: a run directory wherever a config asks for a checkpoint.

A pipeline trains stage after stage (an autoencoder, then a dIIN on its
code). The later config names the earlier stage by its run directory instead
of a checkpoint file, so nothing has to be copied by hand::

    model_params:
      first_stage:
        checkpoint: logs/*_sprites_ae_cpu     # a run directory, or a pattern: the newest matching run
        # model, model_params: omitted, read from that run's saved config
      factor_config: logs/*_sprites_ae_cpu    # the factor sizes that run estimated (factor_dim_<k>)

:func:`resolve_run_references` rewrites the config before the run starts, so
the config the run saves (``<run>/configs/train_*.yaml``) names the exact
checkpoint file it used:

* every ``checkpoint`` key, at any depth, whose value is a run directory
  (it has ``train/checkpoints/``) becomes that run's highest-step checkpoint;
* in the same section (also when ``checkpoint`` is a file in a run's
  ``train/checkpoints/``), an omitted ``model`` (``source`` unset or
  ``invproto``) is read from that run's newest saved train config, and so are
  its ``model_params``, with any given here on top (they override the run's);
* ``factor_config`` given as a run directory becomes the newest
  ``factor_dim_<k>`` estimates in that run's ``results/scores.yaml`` (a
  dimension-evaluation run, or any run whose validation data are factor pairs);
* a value with a glob pattern (``*``, ``?``, ``[``) names the newest matching
  run directory (run names begin with their start time) that has what is
  asked for: a checkpoint, or factor dimensions.

Every resolution is printed as one ``invproto:`` line. A run directory
without a checkpoint, a pattern no run matches, or a run without factor
dimensions raises one :class:`~invproto.errors.ConfigError` naming the key
and the fix.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from invproto.artifacts import RunArtifacts
from invproto.errors import ConfigError
from invproto.io import latest_checkpoint

_FACTOR_DIM = re.compile(r"^factor_dim_(\d+)$")


def highest_step_checkpoint(run: Path) -> str | None:
    """The ``<name>-<step>.ckpt`` of ``run/train/checkpoints`` with the highest step (None if none)."""
    return latest_checkpoint(run / "train" / "checkpoints")


def saved_train_config(run: Path) -> dict | None:
    """The newest ``configs/train_*.yaml`` edflow saved in ``run`` (None if there is none)."""
    saved = RunArtifacts(run).newest_train_config()
    return yaml.safe_load(saved.read_text()) if saved else None


def recorded_factor_dims(run: Path) -> list[int] | None:
    """The newest ``factor_dim_<k>`` entries of ``run/results/scores.yaml``, in ``k`` order (None if none)."""
    scores = RunArtifacts(run).read_scores()
    entries = [*(scores.get("per_epoch") or []), *(scores.get("evaluations") or [])]
    with_dims = [entry for entry in entries if any(_FACTOR_DIM.match(key) for key in entry)]
    if not with_dims:
        return None
    newest = max(with_dims, key=lambda entry: entry.get("step", -1))
    dims = sorted((int(m.group(1)), int(value)) for key, value in newest.items() if (m := _FACTOR_DIM.match(key)))
    return [n for _, n in dims]


def is_run_directory(path: Path) -> bool:
    return (path / "train").is_dir() or (path / "configs").is_dir()


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[")


def find_run(reference: str, key: str, read: Callable[[Path], Any], what: str) -> tuple[Path, Any] | None:
    """The run directory ``reference`` names (itself, or the newest match of a pattern where ``read`` finds what
    is needed) and what ``read`` found there; None when ``reference`` is no run directory and no pattern (a file
    path, left as it is)."""
    if _is_pattern(reference):
        matches = sorted((Path(p) for p in glob.glob(reference) if is_run_directory(Path(p))),
                         key=lambda p: p.name, reverse=True)
        for run in matches:
            found = read(run)
            if found is not None:
                return run, found
        found = f"{len(matches)} runs match, none has {what}" if matches else "no run directory matches"
        raise ConfigError(f"{key} '{reference}': {found}; train that stage first, or name a run or file")
    path = Path(reference)
    if not (path.is_dir() and is_run_directory(path)):
        return None
    found = read(path)
    if found is None:
        raise ConfigError(f"{key} '{reference}' is a run directory without {what}; train it (edflow -p "
                          f"{reference} -t) or name another run or file")
    return path, found


def _sections(config: Any, key: str = "") -> Iterator[tuple[str, dict]]:
    """Every mapping in ``config`` with its dotted key."""
    if isinstance(config, dict):
        yield key, config
        for name, value in config.items():
            yield from _sections(value, f"{key}.{name}" if key else str(name))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            yield from _sections(value, f"{key}.{index}")


def run_of_checkpoint_file(path: str) -> Path | None:
    """The run directory holding the checkpoint file ``path`` (``<run>/train/checkpoints/<file>``), if any."""
    file = Path(path)
    run = file.parent.parent.parent
    return run if file.is_file() and file.parent.name == "checkpoints" and is_run_directory(run) else None


def _resolve_checkpoint(section: dict, key: str) -> str | None:
    reference = section.get("checkpoint")
    if not isinstance(reference, str):
        return None
    lines = []
    found = find_run(reference, f"{key}.checkpoint", highest_step_checkpoint, "a checkpoint in train/checkpoints/")
    if found is not None:
        run, section["checkpoint"] = found
        lines.append(f"invproto: {key}.checkpoint {reference} -> {section['checkpoint']}")
    else:
        run = run_of_checkpoint_file(reference)
    if run is not None and section.get("source", "invproto") == "invproto" and not section.get("model"):
        saved = saved_train_config(run)
        if saved is None or "model" not in saved:
            raise ConfigError(f"{key}.model is omitted and run {run} has no saved config naming its model; "
                              f"set {key}.model and {key}.model_params")
        section["model"] = saved["model"]
        section["model_params"] = {**(saved.get("model_params") or {}), **(section.get("model_params") or {})}
        lines.append(f"invproto: {key}.model and model_params from {run}/configs: {saved['model']}")
    return "\n".join(lines) or None


def _resolve_factor_config(section: dict, key: str) -> str | None:
    reference = section.get("factor_config")
    if not isinstance(reference, str):
        return None
    found = find_run(reference, f"{key}.factor_config", recorded_factor_dims,
                     "factor dimensions (factor_dim_<k> in results/scores.yaml)")
    if found is None:
        raise ConfigError(f"{key}.factor_config '{reference}' must be a list of sizes or a run directory "
                          f"whose results/scores.yaml has factor_dim_<k>")
    _, section["factor_config"] = found
    return f"invproto: {key}.factor_config {reference} -> {section['factor_config']}"


def resolve_run_references(config: dict) -> list[str]:
    """Rewrite run directories in ``config`` in place (see the module docstring); return the lines saying
    what each became."""
    lines = []
    for key, section in list(_sections(config)):
        for resolve in (_resolve_checkpoint, _resolve_factor_config):
            line = resolve(section, key)
            if line:
                lines.append(line)
    return lines
