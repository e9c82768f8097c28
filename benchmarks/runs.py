"""Run the edflow CLI from a benchmark and read back what the run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EDFLOW = str(Path(sys.executable).with_name("edflow"))


def edflow(*args: str, env: dict | None = None) -> tuple[float, str]:
    """Run ``edflow *args`` in the repository root; return (wall seconds, output)."""
    start = time.perf_counter()
    result = subprocess.run([EDFLOW, *args], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"edflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return wall, result.stdout + result.stderr


def latest_run(name: str) -> Path:
    """The newest ``logs/<time>_<name>`` directory."""
    runs = sorted((REPO / "logs").glob(f"*_{name}"))
    if not runs:
        raise FileNotFoundError(f"no run named {name} under {REPO / 'logs'}")
    return runs[-1]


def train_config(run: Path) -> Path:
    return sorted((run / "configs").glob("train_*.yaml"))[-1]


def scores(run: Path) -> dict:
    return yaml.safe_load((run / "results" / "scores.yaml").read_text())
