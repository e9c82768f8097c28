"""Run the real ``edflow`` CLI in a scratch directory, as a user would.

The scratch directory links ``invproto/`` and ``configs/`` from the repository
(edflow copies the code root into every run) and gets its own ``logs/``.
Real data comes from ``../shared/data``; wandb is offline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from invproto.artifacts import RunArtifacts

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EDFLOW = str(Path(sys.executable).with_name("edflow"))

# A small, fast classifier run: 8-channel encoder, 256 validation images.
QUICK = ["--model_params/base_channels", "8", "--batch_size", "32", "--data/validation_size", "256",
         "--optimizer/warmup_steps", "0", "--log_freq", "10"]


class EdflowRunner:
    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("invproto", "configs"):
            link = self.workdir / name
            if not link.exists():
                link.symlink_to(REPO / name)
        self.env = {**os.environ, "INVPROTO_DATA": str(SHARED_DATA), "WANDB_MODE": "offline",
                    "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([EDFLOW, *args], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen:
        """Start edflow in its own process group (so a kill reaches its data workers)."""
        return subprocess.Popen([EDFLOW, *args], cwd=self.workdir, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def runs(self, name: str) -> list[Path]:
        return sorted((self.workdir / "logs").glob(f"*_{name}"))

    def run_dir(self, name: str) -> Path:
        runs = self.runs(name)
        assert len(runs) == 1, f"expected one run named {name}, found {runs}"
        return runs[0]

    @staticmethod
    def train_config(run: Path) -> Path:
        saved = RunArtifacts(run).newest_train_config()
        assert saved is not None, f"{run} has no configs/train_*.yaml"
        return saved

    def train(self, config: str, name: str, *args: str) -> Path:
        """``edflow -b config -t -n name *args``, which must succeed; the run directory."""
        result = self("-b", config, "-t", *args, "-n", name)
        assert result.returncode == 0, result.stderr[-3000:]
        return self.run_dir(name)

    def evaluate(self, run: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
        """``edflow -p <run's train config> *args``, which must succeed; its output and ``results/scores.yaml``."""
        result = self("-p", str(self.train_config(run)), *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return result, yaml.safe_load((run / "results" / "scores.yaml").read_text())

    @staticmethod
    def wait_for(path_glob, directory: Path, timeout: float = 300) -> Path:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = sorted(directory.glob(path_glob))
            if found:
                return found[0]
            time.sleep(0.2)
        raise TimeoutError(f"{path_glob} did not appear in {directory} within {timeout} s")
