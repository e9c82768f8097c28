"""The runs under a logs directory: their config, checkpoints, scores and metrics.

A run is a directory ``logs/<time>_<name>/`` with ``configs/train_*.yaml``
(edflow's copy of the config as trained; the latest one after a resume).
Everything here only reads files; nothing is built or executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from invproto.artifacts import RunArtifacts
from invproto.demo.kinds import model_kind

# Metrics the run list shows (from results/scores.yaml's ``final``) and the metrics view plots first.
KEY_METRICS = ("accuracy", "bits_per_dim", "fid_reconstruction", "fid_samples", "l1", "nll", "dead_prototypes")
FACTOR_DIM_PREFIX = "factor_dim_"  # the factor-dimensionality estimates, factor_dim_0, factor_dim_1, ...
CHECKPOINT_NAME = re.compile(r"model-(\d+)\.ckpt$")


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / "configs").glob("train_*.yaml"))


def short_name(import_path: str) -> str:
    """``invproto.data.SpritesTrain`` -> ``SpritesTrain``."""
    return str(import_path).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Run:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def project_dir(self) -> Path:
        """Where ``edflow`` ran (``<project>/logs/<run>``): relative paths in the config start here."""
        return self.path.parent.parent

    @cached_property
    def config(self) -> dict:
        """The latest ``configs/train_*.yaml`` ({} when unreadable)."""
        latest = sorted((self.path / "configs").glob("train_*.yaml"))[-1]
        try:
            config = yaml.safe_load(latest.read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return config if isinstance(config, dict) else {}

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    @property
    def dataset(self) -> str:
        return short_name((self.config.get("datasets") or {}).get("train", "?"))

    @property
    def checkpoints(self) -> list[Path]:
        """``train/checkpoints/model-<step>.ckpt``, by step (the latest last)."""
        found = [path for path in (self.path / "train" / "checkpoints").glob("model-*.ckpt")
                 if CHECKPOINT_NAME.search(path.name)]
        return sorted(found, key=checkpoint_step)

    @property
    def scores(self) -> dict:
        """``results/scores.yaml``: ``final``, ``per_epoch``, ``evaluations`` (empty when missing or unreadable)."""
        try:
            scores = RunArtifacts(self.path).read_scores()
        except (OSError, yaml.YAMLError):
            scores = None
        return scores if isinstance(scores, dict) else {"final": None, "per_epoch": [], "evaluations": []}

    def metrics(self) -> pd.DataFrame:
        """``metrics.csv``: one row per logged step or evaluation, columns ``step``, ``phase`` and one per metric."""
        path = self.path / "metrics.csv"
        try:
            return pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            return pd.DataFrame(columns=["step", "phase"])


def checkpoint_step(path: Path) -> int:
    """``model-860.ckpt`` -> 860."""
    return int(CHECKPOINT_NAME.search(path.name).group(1))


def find_runs(logs: Path) -> list[Run]:
    """The runs directly under ``logs``, newest first (edflow names them ``<time>_<name>``); ``[logs]`` when
    ``logs`` is itself a run."""
    logs = Path(logs)
    if is_run(logs):
        return [Run(logs)]
    if not logs.is_dir():
        return []
    return [Run(path) for path in sorted(logs.iterdir(), reverse=True) if is_run(path)]


def key_metrics(scores: dict) -> dict[str, float]:
    """The :data:`KEY_METRICS` and factor dimensionalities of a run's latest evaluation (``final``)."""
    final = scores.get("final") or {}
    return {name: value for name, value in final.items()
            if name in KEY_METRICS or str(name).startswith(FACTOR_DIM_PREFIX)}


def run_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: name, model class, kind, training dataset, latest checkpoint step, key metrics."""
    rows = []
    for run in runs:
        checkpoints = run.checkpoints
        rows.append({"run": run.name, "model": short_name(run.model), "kind": run.kind, "dataset": run.dataset,
                     "step": checkpoint_step(checkpoints[-1]) if checkpoints else None,
                     **key_metrics(run.scores)})
    table = pd.DataFrame(rows)
    metric_columns = [c for c in table.columns if c not in ("run", "model", "kind", "dataset", "step")]
    ordered = [c for c in KEY_METRICS if c in metric_columns] + sorted(set(metric_columns) - set(KEY_METRICS))
    return table[["run", "model", "kind", "dataset", "step", *ordered]].set_index("run")


def metric_names(frame: pd.DataFrame) -> list[str]:
    """Columns of ``metrics.csv`` holding numbers, key metrics first."""
    numeric = [c for c in frame.columns if c not in ("step", "phase")
               and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]
    return [c for c in KEY_METRICS if c in numeric] + [c for c in numeric if c not in KEY_METRICS]


def per_epoch_metrics(frame: pd.DataFrame) -> list[str]:
    """Metrics evaluated after epochs or by ``edflow -p`` (the phases ``epoch_end``, ``evaluation``)."""
    evaluated = frame[frame["phase"].isin(["epoch_end", "evaluation"])]
    return [name for name in metric_names(frame) if evaluated[name].notna().any()]


def metric_curves(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``name`` over training, long format: columns ``step``, ``phase`` (train, validation, epoch_end,
    evaluation) and ``name``; one row per step and phase (the last value logged), sorted by step."""
    rows = frame.dropna(subset=[name])
    return rows.groupby(["phase", "step"], as_index=False)[name].last().sort_values(["step", "phase"])
