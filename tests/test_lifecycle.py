"""Issue 16, the resume part: a run lifecycle you can trust.

Real ``edflow`` processes (slow) on a tiny Sprites classifier (256 training
images, batches of 32: 8 steps per epoch, a few seconds of training):

* kill -9 in the middle of training, then ``edflow -p <run> -t``, ends with
  bit-identical weights to an uninterrupted run of the same seed (tolerance:
  exactly equal, CPU), and ``metrics.csv`` holds no step twice; a second
  trainer is refused while the first runs, the lock of the killed one is
  taken over;
* ``-p <run> -t --optimizer/lr ... --num_epochs ...`` prints what changed and
  trains a finished run's extra epochs at the new rate;
* a diverged run stops with the command that resumes it, which resumes from
  the last checkpoint with finite weights at the lower rate.

Fast unit tests cover the pieces (lock, metrics, overrides, finiteness).
"""

from __future__ import annotations

import collections
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from edflow_runner import EdflowRunner

from invproto.artifacts import RunArtifacts
from invproto.config.resume import changes
from invproto.errors import RunError
from invproto.iterators.nan_recovery import last_finite_checkpoint, nonfinite_tensors
from invproto.iterators.resume_overrides import keep_configured_hyperparameters
from invproto.iterators.run_lock import LOCK_NAME, RunLock

TINY = ["-b", "configs/sprites_clf.yaml", "-t", "--dataset_params/n_train", "256", "--dataset_params/n_validation",
        "64", "--batch_size", "32", "--model_params/base_channels", "4", "--optimizer/warmup_steps", "0",
        "--optimizer/schedule", "constant", "--log_freq", "4", "--ckpt_freq", "4"]


def model_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def repeated_steps(run: Path) -> list:
    counts = collections.Counter((row["step"], row["phase"]) for row in metric_rows(run))
    return [key for key, count in counts.items() if count > 1]


def wait_for_file(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert process.poll() is None, f"the run ended ({process.returncode}) before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.2)


@pytest.mark.slow
def test_kill_then_resume_matches_an_uninterrupted_run_under_one_lock(tmp_path):
    runner = EdflowRunner(tmp_path)
    first = runner.start(*TINY, "--num_steps", "100000", "-n", "killed")
    try:
        while not runner.runs("killed"):
            assert first.poll() is None, "the run ended before it created its directory"
            time.sleep(0.2)
        run = runner.run_dir("killed")
        wait_for_file(run / LOCK_NAME, first)
        holder = json.loads((run / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid
        second = runner("-p", str(run), "-t")
        assert second.returncode == 1
        refusal = second.stderr.strip().splitlines()[-1]
        assert f"is being trained by process {first.pid}" in refusal, second.stderr[-2000:]
        wait_for_file(run / "train" / "checkpoints" / "model-8.ckpt", first)
    finally:
        runner.kill(first)
    assert (run / LOCK_NAME).is_file()  # left behind by kill -9
    last = max(int(p.stem.split("-")[1]) for p in (run / "train" / "checkpoints").glob("model-*.ckpt"))
    target = last + 12  # resumes inside an epoch (8 steps each) and crosses the next

    resumed = runner("-p", str(run), "-t", "--num_steps", str(target))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"took over the lock of process {first.pid}" in resumed.stderr
    assert f"invproto: changed: num_steps 100000 -> {target}" in resumed.stderr
    assert not (run / LOCK_NAME).exists()
    assert repeated_steps(run) == []
    assert max(int(row["step"]) for row in metric_rows(run)) == target

    straight = runner.train("configs/sprites_clf.yaml", "straight", *TINY[3:], "--num_steps", str(target))
    ours, reference = (model_state(r / "train" / "checkpoints" / f"model-{target}.ckpt") for r in (run, straight))
    for name, tensor in reference.items():
        assert torch.equal(ours[name], tensor), name


@pytest.mark.slow
def test_resume_applies_a_new_lr_and_extends_a_finished_run(tmp_path):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/sprites_clf.yaml", "extended", *TINY[3:], "--num_epochs", "1",
                       "--optimizer/lr", "0.002")
    checkpoints = run / "train" / "checkpoints"
    assert (checkpoints / "model-8.ckpt").is_file() and not (checkpoints / "model-12.ckpt").exists()

    result = runner("-p", str(run), "-t", "--optimizer/lr", "1e-4", "--num_epochs", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invproto: changed: optimizer.lr 0.002 -> 0.0001" in result.stderr
    assert "invproto: changed: num_epochs 1 -> 3" in result.stderr
    assert (checkpoints / "model-24.ckpt").is_file() and not (checkpoints / "model-28.ckpt").exists()
    state = torch.load(checkpoints / "model-24.ckpt", weights_only=True)
    assert [group["lr"] for group in state["optimizer"]["param_groups"]] == [1e-4]
    assert state["schedule"]["base_lrs"] == [1e-4]
    lrs = {int(row["step"]): float(row["lr"]) for row in metric_rows(run) if row["phase"] == "train"}
    assert all(lr == 0.002 for step, lr in lrs.items() if step < 8)
    assert all(lr == 1e-4 for step, lr in lrs.items() if step >= 8) and max(lrs) >= 20
    assert repeated_steps(run) == []


@pytest.mark.slow
def test_a_diverged_run_resumes_from_its_last_finite_checkpoint_at_a_lower_lr(tmp_path):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/sprites_clf.yaml", "diverged", *TINY[3:], "--num_epochs", "1")  # model-4, model-8
    # Adam at lr 1e4 from step 8 on: the loss of step 9 is NaN (deterministic on the CPU)
    result = runner("-p", str(run), "-t", "--optimizer/lr", "1e4", "--num_epochs", "2", "--log_freq", "1")
    assert result.returncode == 1
    assert "invproto: changed: optimizer.lr 0.002 -> 10000.0" in result.stderr
    stop = result.stderr.strip().splitlines()[-1]
    assert stop.endswith(f"invproto: the loss is not finite at step 9; the state is not saved. Resume from the "
                         f"last checkpoint with finite weights at a lower learning rate: "
                         f"edflow -p {run} -t --optimizer/lr 1000"), stop
    checkpoints = run / "train" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["model-4.ckpt", "model-8.ckpt"]
    # a checkpoint with exploded weights, as one written just before the NaN could be (before this check)
    state = torch.load(checkpoints / "model-8.ckpt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first][...] = float("nan")
    torch.save(state, checkpoints / "model-12.ckpt")

    resumed = runner("-p", str(run), "-t", "--optimizer/lr", "1e-4")  # the advice, with a rate that works
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "invproto: changed: optimizer.lr 10000.0 -> 0.0001" in resumed.stderr
    assert f"invproto: skipping {checkpoints / 'model-12.ckpt'}: non-finite model.{first}" in resumed.stderr
    assert f"invproto: resuming from {checkpoints / 'model-8.ckpt'}" in resumed.stderr
    assert f"invproto: resumed from {checkpoints / 'model-8.ckpt'} at step 8" in resumed.stdout
    for path in checkpoints.glob("*.ckpt"):  # model-12 rewritten by the resumed run
        assert list(nonfinite_tensors(torch.load(path, weights_only=True))) == [], path
    final = torch.load(checkpoints / "model-16.ckpt", weights_only=True)
    assert final["schedule"]["base_lrs"] == [1e-4] and final["optimizer"]["param_groups"][0]["lr"] == 1e-4
    assert repeated_steps(run) == []


# --- fast unit tests -------------------------------------------------------------------------------

def test_metrics_after_the_resumed_step_are_dropped(tmp_path):
    artifacts = RunArtifacts(tmp_path)
    for step in range(0, 13, 4):
        artifacts.append_metrics({"step": step, "phase": "train", "loss": 1.0})
        if step % 8 == 0 and step:
            artifacts.append_metrics({"step": step, "phase": "epoch_end", "accuracy": 0.5})
    assert artifacts.drop_metrics_after(8) == 2  # train rows of 8 and 12; the evaluation of model-8 stays
    rows = list(csv.DictReader(open(artifacts.metrics_path, newline="")))
    assert [(r["step"], r["phase"]) for r in rows] == [("0", "train"), ("4", "train"), ("8", "epoch_end")]
    assert artifacts.drop_metrics_after(8) == 0
    assert RunArtifacts(tmp_path / "none").drop_metrics_after(3) == 0


def test_changes_lists_the_overridden_values_that_differ():
    saved = {"optimizer": {"lr": 0.001, "name": "adam"}, "num_epochs": 2, "batch_size": 32}
    overrides = {"optimizer": {"lr": 0.0001, "name": "adam", "grad_clip_norm": 1.0}, "num_epochs": 5,
                 "batch_size": 32}
    assert list(changes(saved, overrides)) == [("optimizer.lr", 0.001, 0.0001),
                                               ("optimizer.grad_clip_norm", "(unset)", 1.0),
                                               ("num_epochs", 2, 5)]


def test_a_live_lock_refuses_and_a_dead_or_reused_one_is_taken_over(tmp_path):
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over is None
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = {**lock.me, "pid": other.pid, "started": psutil.Process(other.pid).create_time()}
        lock.path.write_text(json.dumps(live))
        with pytest.raises(RunError, match=f"being trained by process {other.pid} "):
            RunLock(tmp_path).acquire()
        reused = {**live, "started": live["started"] - 3600}  # same PID, another process: stale
        lock.path.write_text(json.dumps(reused))
        assert RunLock(tmp_path).acquire().took_over == reused
    finally:
        other.kill()
        other.wait()
    lock.path.write_text(json.dumps(live))  # the process has exited
    taker = RunLock(tmp_path).acquire()
    assert taker.took_over == live and json.loads(lock.path.read_text()) == taker.me
    elsewhere = {**live, "host": "another-machine"}
    lock.path.write_text(json.dumps(elsewhere))
    with pytest.raises(RunError, match="on another-machine"):
        RunLock(tmp_path).acquire()
    lock.path.write_text(json.dumps(taker.me))
    taker.release()
    assert not lock.path.exists()


def test_last_finite_checkpoint_skips_non_finite_ones(tmp_path, capsys):
    good = {"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}}}
    bad = {"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"exp_avg": torch.tensor([1.0, float("inf")])}}}}
    for step, state in ((2, good), (4, good), (6, bad), (8, {"model": {"w": torch.tensor([float("nan")])}})):
        torch.save(state, tmp_path / f"model-{step}.ckpt")
    assert last_finite_checkpoint(str(tmp_path / "model-8.ckpt")) == str(tmp_path / "model-4.ckpt")
    err = capsys.readouterr().err
    assert "model-8.ckpt: non-finite model.w" in err and "model-6.ckpt: non-finite optimizer.state.0.exp_avg" in err
    assert last_finite_checkpoint(str(tmp_path / "model-4.ckpt")) == str(tmp_path / "model-4.ckpt")


def test_a_restore_keeps_the_configured_lr_and_the_restored_step():
    def build(lr):
        class Holder:
            pass
        holder = Holder()
        parameter = torch.nn.Parameter(torch.zeros(1))
        holder.optimizer = torch.optim.Adam([parameter], lr=lr)
        holder.schedule = torch.optim.lr_scheduler.LambdaLR(holder.optimizer, lambda step: 1 / (step + 1))
        return holder

    old = build(1e-3)
    for _ in range(3):
        old.optimizer.step()
        old.schedule.step()
    new = build(1e-4)
    with keep_configured_hyperparameters(new):
        new.optimizer.load_state_dict(old.optimizer.state_dict())
        new.schedule.load_state_dict(old.schedule.state_dict())
    assert new.schedule.last_epoch == 3 and new.schedule.base_lrs == [1e-4]
    assert new.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 / 4) == new.schedule.get_last_lr()[0]
    assert new.optimizer.param_groups[0]["initial_lr"] == 1e-4

