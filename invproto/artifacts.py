"""Run artifacts beyond edflow's own, all under the run directory ``logs/<run>/``.

* ``results/scores.yaml`` -- evaluation metrics: ``per_epoch`` (after each
  training epoch), ``evaluations`` (from ``edflow -p``) and ``final`` (the
  latest of either).
* ``results/model_info.yaml`` -- parameter count, size, train and inference
  throughput (images/s), device.
* ``metrics.csv`` -- one row per logged step (train/validation scalars) or
  evaluation, one column per metric.

Read here too: edflow's own ``configs/train_*.yaml``, the run's config as
saved by each training start (:meth:`RunArtifacts.newest_train_config`).

All files are rewritten atomically; a resumed run appends to what exists,
after dropping the rows its resumed steps will write again
(:meth:`RunArtifacts.drop_metrics_after`), so no step appears twice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping

import yaml

from invproto.io import atomic_write_text


def current_run_root() -> Path:
    """The edflow run directory of this process (``logs/<time>_<name>``)."""
    from edflow.custom_logging import run

    return Path(run.root)


class RunArtifacts:
    def __init__(self, run_root: str | Path):
        self.root = Path(run_root)
        self.scores_path = self.root / "results" / "scores.yaml"
        self.model_info_path = self.root / "results" / "model_info.yaml"
        self.metrics_path = self.root / "metrics.csv"

    def newest_train_config(self) -> Path | None:
        """The newest ``configs/train_*.yaml`` edflow saved (the names hold the start time); None if none."""
        saved = sorted((self.root / "configs").glob("train_*.yaml"))
        return saved[-1] if saved else None

    # scores.yaml
    def read_scores(self) -> dict:
        if not self.scores_path.is_file():
            return {"final": None, "per_epoch": [], "evaluations": []}
        return yaml.safe_load(self.scores_path.read_text())

    def add_scores(self, step: int, metrics: Mapping[str, float], *, evaluation: bool,
                   context: Mapping[str, object]) -> dict:
        """Merge ``metrics`` into the entry of ``step`` (one entry per step and dataset)."""
        scores = self.read_scores()
        entries = scores["evaluations" if evaluation else "per_epoch"]
        entry = {"step": int(step), **context}
        for existing in entries:
            if all(existing.get(k) == v for k, v in entry.items()):
                entry = existing
                break
        else:
            entries.append(entry)
        entry.update({k: float(v) for k, v in metrics.items()})
        scores["final"] = dict(entry)
        atomic_write_text(self.scores_path, yaml.safe_dump(scores, sort_keys=False))
        return entry

    # model_info.yaml
    def write_model_info(self, info: Mapping[str, object]) -> None:
        atomic_write_text(self.model_info_path, yaml.safe_dump(dict(info), sort_keys=False))

    # metrics.csv
    def append_metrics(self, row: Mapping[str, object]) -> None:
        rows = []
        if self.metrics_path.is_file():
            with open(self.metrics_path, newline="") as f:
                rows = list(csv.DictReader(f))
        rows.append({k: v for k, v in row.items()})
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def drop_metrics_after(self, step: int) -> int:
        """Before training resumes from the checkpoint of ``step``: drop the rows the resumed run writes again.

        The checkpoint of ``step`` holds the state after ``step`` optimizer
        steps; the resumed run's first step is ``step`` and logs as ``step``.
        So rows of later steps go, and the rows of ``step`` itself except the
        evaluations of that restored state (``epoch_end``, ``evaluation``).
        Returns the number of rows dropped; the file is rewritten atomically.
        """
        if not self.metrics_path.is_file():
            return 0
        with open(self.metrics_path, newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = reader.fieldnames or [], list(reader)

        def kept(row: Mapping[str, str]) -> bool:
            try:
                row_step = int(float(row.get("step") or 0))
            except ValueError:
                return True
            return row_step < step or (row_step == step and row.get("phase") in ("epoch_end", "evaluation"))

        remaining = [row for row in rows if kept(row)]
        if len(remaining) < len(rows):
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns)
            writer.writeheader()
            writer.writerows(remaining)
            atomic_write_text(self.metrics_path, buffer.getvalue())
        return len(rows) - len(remaining)
