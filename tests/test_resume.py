"""SIGKILL between checkpoints, then resume: training continues from the last checkpoint.

(Bit-identical weights after kill + resume, the trainer lock, new hyperparameters on resume and
NaN recovery: tests/test_lifecycle.py.)"""

import csv
import re

import pytest
import torch
import yaml
from edflow_runner import QUICK, SHARED_DATA, EdflowRunner

from invproto.io import atomic_torch_save


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
