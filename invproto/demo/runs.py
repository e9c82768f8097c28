"""The runs under a logs directory: their config, checkpoints, scores and metrics.

A run is a directory ``logs/<time>_<name>/`` with ``configs/train_*.yaml``
(edflow's copy of the config as trained; the latest one after a resume).
Everything here only reads files; nothing is built or executed.

Each run's files are read on their own: a malformed file is a one-line
:class:`~invproto.demo.kinds.LoadError` naming the run and the file, so the
page shows it for that run while the others keep working. Malformed is

* a config, ``results/scores.yaml`` or ``metrics.csv`` that cannot be read
  (permissions, a directory, not UTF-8) or parsed,
* a config or ``scores.yaml`` that is not a mapping, a config that names an
  import path outside ``invproto.`` (:func:`~invproto.demo.kinds.check_imports`),
  or whose ``datasets`` is not a mapping,
* a ``scores.yaml`` whose ``final`` is not a mapping, whose key metrics in
  ``final`` are not numbers, or whose ``per_epoch`` or ``evaluations`` is not
  a list of mappings,
* a ``metrics.csv`` without a ``step`` or ``phase`` column, or with a step
  that is not a number (a metric column that is not all numbers is not plotted).

A missing ``scores.yaml`` or ``metrics.csv`` (or an empty ``metrics.csv``) is
a run without results yet, not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from invproto.artifacts import RunArtifacts
from invproto.demo.kinds import LoadError, check_imports, first_line, model_kind

# Metrics the run list shows (from results/scores.yaml's ``final``) and the metrics view plots first.
KEY_METRICS = ("accuracy", "bits_per_dim", "fid_reconstruction", "fid_samples", "l1", "nll", "dead_prototypes")
FACTOR_DIM_PREFIX = "factor_dim_"  # the factor-dimensionality estimates, factor_dim_0, factor_dim_1, ...
CHECKPOINT_NAME = re.compile(r"model-(\d+)\.ckpt$")
METRICS_FILE = "metrics.csv"
SCORE_LISTS = ("per_epoch", "evaluations")


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / "configs").glob("train_*.yaml"))


def unreadable(error: Exception) -> str:
    """Why a file cannot be read, completing ``<file> ...``."""
    return f"cannot be read ({type(error).__name__}: {first_line(error)})"


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

    def problem(self, file: str, what: str) -> LoadError:
        """The error ``<run>: <file> <what>`` about the run's ``file`` (a path relative to the run)."""
        return LoadError(f"{self.name}: {file} {what}")

    def read_yaml(self, file: str) -> object:
        """The parsed YAML file ``file`` of the run; :class:`LoadError` when it cannot be read or parsed."""
        try:
            return yaml.safe_load((self.path / file).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise self.problem(file, unreadable(error)) from None

    @property
    def config_file(self) -> str:
        """The latest ``configs/train_*.yaml``, relative to the run."""
        return str(RunArtifacts(self.path).newest_train_config().relative_to(self.path))

    @cached_property
    def config(self) -> dict:
        """The latest ``configs/train_*.yaml``; :class:`LoadError` when it is malformed or names an import path
        outside ``invproto.`` (checked before anything is imported)."""
        config = self.read_yaml(self.config_file)
        if not isinstance(config, dict):
            raise self.problem(self.config_file, f"is not a mapping (a {type(config).__name__})")
        check_imports(config, f"{self.name}: {self.config_file}")
        return config

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    @property
    def datasets(self) -> dict:
        """The config's ``datasets`` (split: import path); :class:`LoadError` when it is not a mapping."""
        datasets = self.config.get("datasets") or {}
        if not isinstance(datasets, dict):
            raise self.problem(self.config_file, f"has datasets that are not a mapping (a {type(datasets).__name__})")
        return datasets

    @property
    def dataset(self) -> str:
        return short_name(self.datasets.get("train", "?"))

    @property
    def checkpoints(self) -> list[Path]:
        """``train/checkpoints/model-<step>.ckpt``, by step (the latest last)."""
        found = [path for path in (self.path / "train" / "checkpoints").glob("model-*.ckpt")
                 if CHECKPOINT_NAME.search(path.name)]
        return sorted(found, key=checkpoint_step)

    @property
    def scores(self) -> dict:
        """``results/scores.yaml``: ``final`` (a mapping or None), ``per_epoch`` and ``evaluations`` (lists of
        mappings); empty when the file is missing, :class:`LoadError` when it is malformed."""
        path = RunArtifacts(self.path).scores_path
        if not path.exists():
            return {"final": None, "per_epoch": [], "evaluations": []}
        file = str(path.relative_to(self.path))
        scores = self.read_yaml(file)
        problem = scores_problem(scores)
        if problem:
            raise self.problem(file, problem)
        return scores

    def prototype_usage(self) -> tuple[int, list[int]] | None:
        """``(step, images explained per prototype)`` of the latest evaluation that recorded prototype usage
        (``eval/<time>/<step>/prototype_usage.yaml``, see :mod:`invproto.callbacks.prototypes`); None if none
        did; :class:`LoadError` when that file is malformed."""
        found = [(int(path.parent.name), path.stat().st_mtime_ns, path)
                 for path in (self.path / "eval").glob("*/*/prototype_usage.yaml") if path.parent.name.isdigit()]
        if not found:
            return None
        step, _, path = max(found)
        file = str(path.relative_to(self.path))
        recorded = self.read_yaml(file)
        usage = recorded.get("images_explained") if isinstance(recorded, dict) else None
        if not (isinstance(usage, list) and all(isinstance(n, int) and n >= 0 for n in usage)):
            raise self.problem(file, "has no images_explained list of counts")
        return step, usage

    def metrics(self) -> pd.DataFrame:
        """``metrics.csv``: one row per logged step or evaluation, columns ``step``, ``phase`` and one per metric
        (no rows when the file is missing or empty); :class:`LoadError` when it is malformed."""
        try:
            frame = pd.read_csv(self.path / METRICS_FILE)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame(columns=["step", "phase"])
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
            raise self.problem(METRICS_FILE, unreadable(error)) from None
        missing = [column for column in ("step", "phase") if column not in frame.columns]
        if missing:
            raise self.problem(METRICS_FILE, f"has no {' and no '.join(missing)} column")
        if pd.to_numeric(frame["step"], errors="coerce").isna().any():
            raise self.problem(METRICS_FILE, "has a step that is not a number")
        return frame


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


def is_key_metric(name: object) -> bool:
    """Whether the run list shows the metric ``name``: a :data:`KEY_METRICS` or a factor dimensionality."""
    return name in KEY_METRICS or str(name).startswith(FACTOR_DIM_PREFIX)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scores_problem(scores: object) -> str | None:
    """What makes a parsed ``scores.yaml`` unusable (completing ``results/scores.yaml ...``), or ``None``."""
    if not isinstance(scores, dict):
        return f"is not a mapping (a {type(scores).__name__})"
    final = scores.get("final")
    if not isinstance(final, (dict, type(None))):
        return f"has a final that is not a mapping (a {type(final).__name__})"
    for name, value in (final or {}).items():
        if is_key_metric(name) and not is_number(value):
            return f"has final.{name} = {value!r}, which is not a number"
    for section in SCORE_LISTS:
        entries = scores.get(section) or []
        if not (isinstance(entries, list) and all(isinstance(entry, dict) for entry in entries)):
            return f"has a {section} that is not a list of mappings"
    return None


def key_metrics(scores: dict) -> dict[str, float]:
    """The :data:`KEY_METRICS` and factor dimensionalities of a run's latest evaluation (``final``)."""
    final = scores.get("final") or {}
    return {name: value for name, value in final.items() if is_key_metric(name)}


def described(run: Run) -> dict:
    """The run's model class, kind and training dataset, from its config."""
    return {"model": short_name(run.model), "kind": run.kind, "dataset": run.dataset}


def scored(run: Run) -> dict:
    """The run's key metrics, from ``results/scores.yaml``."""
    return key_metrics(run.scores)


def run_row(run: Run) -> dict:
    """The run's row of :func:`run_table`; what cannot be read is left empty and named in ``error``."""
    checkpoints = run.checkpoints
    row = {"run": run.name, "step": checkpoint_step(checkpoints[-1]) if checkpoints else None}
    errors = []
    for columns in (described, scored):
        try:
            row.update(columns(run))
        except LoadError as error:
            errors.append(str(error))
    return {**row, "error": "; ".join(errors) or None}


def run_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: name, model class, kind, training dataset, latest checkpoint step, key metrics, and
    ``error`` (when some run has a malformed file: the problem, else empty)."""
    table = pd.DataFrame([run_row(run) for run in runs])
    described_columns = ["run", "model", "kind", "dataset", "step"]
    metric_columns = [c for c in table.columns if c not in (*described_columns, "error")]
    ordered = [c for c in KEY_METRICS if c in metric_columns] + sorted(set(metric_columns) - set(KEY_METRICS))
    errors = ["error"] if "error" in table and table["error"].notna().any() else []
    table = table.reindex(columns=[*described_columns, *ordered, *errors]).set_index("run")
    table["step"] = table["step"].astype("Int64")  # a run without a checkpoint has none, the others stay integers
    return table


def filtered_runs(table: pd.DataFrame, text: str, sort_by: str | None = None) -> pd.DataFrame:
    """The rows of :func:`run_table` whose name, model, kind or dataset contains ``text`` (any case), sorted by
    the column ``sort_by`` (descending for metrics and steps, empty cells last; None: as found)."""
    columns = table[["model", "kind", "dataset"]].astype(object).fillna("")  # missing: empty, not "nan"
    described = table.index.to_series() + " " + columns.astype(str).agg(" ".join, axis=1)
    shown = table[described.str.contains(text.strip(), case=False, regex=False)] if text.strip() else table
    if sort_by is None:
        return shown
    descending = sort_by not in ("model", "kind", "dataset")
    if sort_by == "run":
        return shown.sort_index()
    return shown.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")


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
