"""Faults a cluster run meets, injected into real ``edflow`` processes: a scheduler's SIGTERM in the middle of a
checkpoint write, a run directory copied with new file times, evaluating a run that has no checkpoint."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from edflow_runner import EDFLOW, QUICK, EdflowRunner

from invproto.io import latest_checkpoint

TRAIN = ["-b", "configs/mnist_clf.yaml", "-t",
         *[("64" if key == "--data/validation_size" else value) for key, value in zip(["", *QUICK], QUICK)]]


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "train" / "checkpoints").glob("*.ckpt"))


def loads(path: Path) -> bool:
    state = torch.load(path, weights_only=True)
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.dtype.is_floating_point)


@pytest.mark.slow
def test_sigterm_during_a_checkpoint_write_keeps_every_checkpoint_whole(tmp_path, shared_data):
    runner = EdflowRunner(tmp_path)
    process = subprocess.Popen([EDFLOW, *TRAIN, "--num_steps", "1000", "--ckpt_freq", "5", "-n", "preempted"],
                               cwd=runner.workdir, env={**runner.env, "INVPROTO_PAUSE_IN_WRITE": "3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    pause = "invproto: pausing in the write of "
    lines = []
    for line in process.stderr:  # wait for the deterministic moment: a checkpoint written, not yet in place
        lines.append(line)
        if pause in line:  # (progress bars share stderr: the message may follow one on its line)
            break
    else:
        pytest.fail(f"no checkpoint write announced; the run ended with {process.wait()}: {lines[-5:]}")
    paused = runner.workdir / line.split(pause, 1)[1].strip()  # relative to the run's working directory
    os.killpg(process.pid, signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    lines += rest.splitlines()

    assert process.returncode == 128 + signal.SIGTERM, lines[-5:]
    stopped = [line[line.index("invproto: stopped"):] for line in lines if "invproto: stopped by SIGTERM" in line]
    assert len(stopped) == 1 and "resume with edflow -p" in stopped[0], lines[-5:]
    run = runner.run_dir("preempted")
    assert paused.is_file() and loads(paused)
    assert all(loads(path) for path in checkpoints(run))
    assert not list((run / "train" / "checkpoints").glob(".*"))  # no temporary file left behind
    # the paused write was edflow's checkpoint of step g (before its optimizer step); the stop saves after it
    done = int(stopped[0].split("after ")[1].split(" steps;")[0])
    latest = run / "train" / "checkpoints" / f"model-{done}.ckpt"
    assert paused.name == f"model-{done - 1}.ckpt"
    assert f"its state is in {latest.relative_to(runner.workdir)};" in stopped[0]
    assert latest_checkpoint(run / "train" / "checkpoints") == str(latest)

    resumed = runner("-p", str(run), "-t", "--num_steps", str(done + 3))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"invproto: resumed from {latest} at step {done}" in resumed.stdout


@pytest.mark.slow
def test_a_copied_run_resumes_from_its_highest_step(tmp_path, shared_data):
    runner = EdflowRunner(tmp_path)
    original = runner.train("configs/mnist_clf.yaml", "original", *TRAIN[3:], "--num_steps", "12",
                            "--ckpt_freq", "4")
    copy = tmp_path / "logs" / "copied_run"
    shutil.copytree(original, copy)
    now = time.time()
    for age, path in enumerate(sorted(checkpoints(copy), key=lambda p: -int(p.stem.split("-")[1]))):
        os.utime(path, (now + age, now + age))  # as after cp -r in any order: the highest step is the oldest file
    resumed = runner("-p", str(copy), "-t", "--num_steps", "14")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"invproto: resumed from {copy / 'train' / 'checkpoints' / 'model-12.ckpt'} at step 12" in resumed.stdout


@pytest.mark.slow
def test_evaluating_a_run_without_checkpoints_refuses_and_leaves_nothing(tmp_path, shared_data):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/mnist_clf.yaml", "empty", *TRAIN[3:], "--num_steps", "2")
    scores_before = (run / "results" / "scores.yaml").read_text()
    for path in checkpoints(run):
        path.unlink()
    evaluations_before = sorted((run / "eval").iterdir())
    result = runner("-p", str(run))
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"invproto: {run} has no checkpoint") and "-c <checkpoint>" in last_line
    assert (run / "results" / "scores.yaml").read_text() == scores_before
    assert sorted((run / "eval").iterdir()) == evaluations_before


@pytest.mark.parametrize("names, expected", [
    (["model-9.ckpt", "model-10.ckpt", "model-2.ckpt"], "model-10.ckpt"),
    (["best.ckpt", "model-3.ckpt", ".model-7.ckpt.abc.tmp"], "model-3.ckpt"),
    (["best.ckpt"], None),
])
def test_latest_checkpoint_is_the_highest_step(tmp_path, names, expected):
    for name in names:
        (tmp_path / name).write_bytes(b"")
    latest = latest_checkpoint(tmp_path)
    assert (Path(latest).name if latest else None) == expected
    assert latest_checkpoint(tmp_path / "missing") is None

