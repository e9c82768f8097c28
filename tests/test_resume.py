"""SIGKILL between checkpoints, then resume: training continues from the last checkpoint; a run keeps
only its newest checkpoints when asked (``keep_checkpoints``).

(Bit-identical weights after kill + resume, the trainer lock, new hyperparameters on resume and
NaN recovery: tests/test_lifecycle.py.)"""

import csv
import re

import pytest
import torch
import yaml
from edflow_runner import QUICK, SHARED_DATA, EdflowRunner

from invproto.io import atomic_torch_save, prune_checkpoints, save_checkpoint


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_sigkill_then_resume_continues_from_last_checkpoint(tmp_path):
    runner = EdflowRunner(tmp_path)
    process = runner.start("-b", "configs/mnist_clf.yaml", "-t", *QUICK, "--num_steps", "100000",
                           "--ckpt_freq", "10", "-n", "killed")
    try:
        run = None
        while run is None:
            runs = runner.runs("killed")
            run = runs[0] if runs else None
            assert process.poll() is None, "training exited before it could be killed"
        runner.wait_for("model-20.ckpt", run / "train" / "checkpoints")
    finally:
        runner.kill(process)
    checkpoints = run / "train" / "checkpoints"
    written = sorted(checkpoints.glob("*.ckpt"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    for checkpoint in written:  # every checkpoint on disk is complete and loadable
        assert set(torch.load(checkpoint, weights_only=True)) >= {"model", "optimizer", "schedule"}
    last_step = int(re.findall(r"\d+", written[-1].name)[0])
    target = last_step + 10

    result = runner("-p", str(run), "-t", "--num_steps", str(target))
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert f"invproto: resumed from {written[-1]} at step {last_step}" in output
    assert (checkpoints / f"model-{target}.ckpt").is_file()
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    assert scores["final"]["step"] == target
    assert len(runner.runs("killed")) == 1, "resuming must not create a second run directory"
    assert f"took over the lock of process {process.pid}" in result.stderr  # kill -9 left it behind
    assert not (run / "trainer.lock").exists()
    rows = [(row["step"], row["phase"]) for row in csv.DictReader(open(run / "metrics.csv", newline=""))]
    assert len(rows) == len(set(rows)), "a step logged twice in metrics.csv"


def test_interrupted_checkpoint_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model-10.ckpt"
    atomic_torch_save({"step": 10}, path)

    def crash_midway(obj, target):
        target.write(b"half a checkpo")  # atomic_torch_save hands torch.save the open temporary file
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 20}, path)
    assert torch.load(path, weights_only=True) == {"step": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["model-10.ckpt"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_a_run_keeps_its_newest_checkpoints_and_resumes_from_them(tmp_path):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/mnist_clf.yaml", "kept", *QUICK, "--num_steps", "8", "--ckpt_freq", "2",
                       "--keep_checkpoints", "2")
    checkpoints = run / "train" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model-6.ckpt", "model-8.ckpt"]
    result = runner("-p", str(run), "-t", "--num_steps", "12")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"invproto: resumed from {checkpoints / 'model-8.ckpt'} at step 8" in result.stdout + result.stderr
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model-10.ckpt", "model-12.ckpt"]


def test_pruning_keeps_the_new_checkpoint_and_touches_only_its_own_name(tmp_path):
    for name in ("model-3.ckpt", "model-5.ckpt", "model-40.ckpt", "model-x-1.ckpt", "other-1.ckpt", "notes.txt",
                 ".model-7.ckpt.abc.tmp"):
        (tmp_path / name).write_bytes(b"")
    # a run resumed from an older checkpoint writes below a later one: the new file is never the one removed
    save_checkpoint({"step": 7}, tmp_path / "model-7.ckpt", keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model-7.ckpt", "model-40.ckpt", "model-x-1.ckpt", "other-1.ckpt", "notes.txt", ".model-7.ckpt.abc.tmp"])
    assert torch.load(tmp_path / "model-7.ckpt", weights_only=True) == {"step": 7}
    assert prune_checkpoints(tmp_path / "model-7.ckpt", 1) == [tmp_path / "model-40.ckpt"]
    save_checkpoint({"step": 9}, tmp_path / "model-9.ckpt")  # keep=None: nothing removed
    assert (tmp_path / "model-7.ckpt").is_file()
