"""Run the edflow CLI from a benchmark and read back what the run wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from invproto.artifacts import RunArtifacts
from invproto.io import latest_checkpoint

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
    """The newest config edflow saved in ``run`` (:meth:`~invproto.artifacts.RunArtifacts.newest_train_config`)."""
    saved = RunArtifacts(run).newest_train_config()
    if saved is None:
        raise FileNotFoundError(f"{run} has no saved config (configs/train_*.yaml)")
    return saved


def training_wall_s(run: Path) -> float:
    """Seconds from a run's start (the time edflow put in its directory name) to its highest-step checkpoint.

    For a run trained earlier and reused: its training time as the file system saw it
    (edflow names runs by the local clock, which is the checkpoints' clock).
    """
    started = datetime.strptime(run.name[:19], "%Y-%m-%dT%H-%M-%S")
    checkpoint = latest_checkpoint(run / "train" / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"{run} has no checkpoint under train/checkpoints")
    return Path(checkpoint).stat().st_mtime - started.timestamp()


def scores(run: Path) -> dict:
    return yaml.safe_load((run / "results" / "scores.yaml").read_text())


def iin_on_cpu_autoencoder(checkpoint: str | Path) -> list[str]:
    """Overrides running ``configs/mnist_iin.yaml`` on an autoencoder of ``configs/mnist_ae_cpu.yaml``.

    That autoencoder works on 28 px MNIST (the IIN config's own first stage is
    the 32 px GPU recipe), so its parameters and the 28 px datasets replace
    the config's.
    """
    first_stage = yaml.safe_load((REPO / "configs" / "mnist_ae_cpu.yaml").read_text())["model_params"]
    overrides = ["--model_params/first_stage/checkpoint", str(checkpoint),
                 "--datasets/train", "invproto.data.MNISTTrain",
                 "--datasets/validation", "invproto.data.MNISTValidation"]
    for key, value in first_stage.items():
        overrides += [f"--model_params/first_stage/model_params/{key}", str(value)]
    return overrides


def reported_root(output: str, name: str) -> str:
    """The run directory an ``edflow`` command reports in ``output`` (``invproto: run directory logs/...``).

    Read from the command's output, so same-named runs side by side do not mix.
    """
    root = re.search(r"^invproto: run directory (\S+)", output, re.MULTILINE)
    if root is None:
        raise RuntimeError(f"edflow did not report the run directory of {name}:\n{output[-3000:]}")
    return root.group(1)


def reported_run(output: str, name: str) -> Path:
    """:func:`reported_root` of a run of this repository."""
    return REPO / reported_root(output, name)


def train(config: str | list[str], name: str, *overrides: str) -> tuple[Path, float]:
    """``edflow -b <config(s)> -t -n name *overrides``; (the run directory, wall seconds)."""
    configs = [config] if isinstance(config, str) else config
    wall, output = edflow("-b", *configs, "-t", "-n", name, *overrides)
    return reported_run(output, name), wall


def newest_checkpoint(run: Path) -> Path:
    """The checkpoint of ``run`` with the highest step."""
    latest = latest_checkpoint(run / "train" / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"{run} has no checkpoint")
    return Path(latest)


def evaluate(run: Path, split: str, *args: str) -> tuple[dict, float]:
    """``edflow -p`` of ``run`` (its last checkpoint unless ``args`` give ``-c``) on the dataset ``split``.

    Returns (the scores it wrote, wall seconds).
    """
    wall, _ = edflow("-p", str(train_config(run)), "--datasets/validation", split, *args)
    result = scores(run)["final"]
    if result["dataset"] != split:
        raise RuntimeError(f"{run}: the last evaluation is on {result['dataset']}, not {split}")
    return result, wall


def best_epoch(run: Path, metric: str = "accuracy") -> dict:
    """The ``per_epoch`` entry of ``run``'s scores with the highest validation ``metric`` (the later on ties)."""
    return max(scores(run)["per_epoch"], key=lambda entry: (entry[metric], entry["step"]))


def test_selected(run: Path, split: str) -> tuple[dict, dict]:
    """Evaluate the checkpoint of ``run``'s best validation epoch on ``split``; (that epoch's entry, test scores)."""
    selected = best_epoch(run)
    checkpoint = run / "train" / "checkpoints" / f"model-{selected['step']}.ckpt"
    test, _ = evaluate(run, split, "-c", str(checkpoint))
    if test["step"] != selected["step"]:
        raise RuntimeError(f"{run}: evaluated step {test['step']}, selected {selected['step']}")
    return selected, test


def train_and_test(config: str, name: str, overrides: list[str], test_split: str) -> tuple[Path, dict, dict, float]:
    """Train ``edflow -b config -t -n name *overrides``, then evaluate its last checkpoint on ``test_split``.

    Returns (run directory, final validation scores, test scores, training wall seconds).
    """
    run, train_wall = train(config, name, *overrides)
    validation = scores(run)["final"]
    test, _ = evaluate(run, test_split)
    return run, validation, test, train_wall
