"""The classifier pipeline through the real edflow CLI on real MNIST.

One short training run (module fixture) is inspected from several sides:
artifacts, evaluation with ``edflow -p``, the test split, refusing a
checkpoint of another model. Separate runs check seeding and NaN handling.
"""

import csv

import pytest
import torch
import yaml
from edflow_runner import QUICK, SHARED_DATA, EdflowRunner

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")

STEPS = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runner = EdflowRunner(tmp_path_factory.mktemp("pipeline"))
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *QUICK, "--num_steps", str(STEPS), "-n", "clf")
    assert result.returncode == 0, result.stderr[-3000:]
    return runner, runner.run_dir("clf"), result


def read_metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_training_prints_and_records_epoch_metrics(trained):
    runner, run, result = trained
    assert f"invproto: accuracy at step {STEPS} on invproto.data.MNISTValidation" in result.stdout
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    final = scores["final"]
    assert final["step"] == STEPS and final["dataset"] == "invproto.data.MNISTValidation"
    assert 0.6 < final["accuracy"] <= 1.0, "40 steps of Adam should be far above chance (0.1)"
    assert 0 <= final["ece"] <= 1 and final["top5_accuracy"] >= final["accuracy"]
    assert scores["per_epoch"] == [final]


@pytest.mark.slow
def test_model_info_and_metrics_csv(trained):
    _, run, _ = trained
    info = yaml.safe_load((run / "results" / "model_info.yaml").read_text())
    state = torch.load(run / "train" / "checkpoints" / f"model-{STEPS}.ckpt", weights_only=True)["model"]
    n_parameters = sum(t.numel() for t in state.values() if t.dtype.is_floating_point)  # buffers are bool
    assert info["parameters"] == n_parameters and info["device"] == "cpu"
    assert info["train_images_per_s"] > 0 and info["inference_images_per_s"] > 0
    assert info["size_mb"] > 0 and info["global_step"] == STEPS
    rows = read_metrics(run)
    train_rows = [r for r in rows if r["phase"] == "train"]
    assert len(train_rows) >= 3 and all(float(r["loss"]) > 0 for r in train_rows)
    assert float(train_rows[-1]["loss"]) < float(train_rows[0]["loss"])
    assert any(r["phase"] == "validation" for r in rows)
    assert rows[-1]["phase"] == "epoch_end" and float(rows[-1]["accuracy"]) > 0.6


@pytest.mark.slow
def test_evaluate_latest_checkpoint_on_test_split(trained):
    runner, run, _ = trained
    result = runner("-p", str(runner.train_config(run)), "--datasets/validation", "invproto.data.MNISTTest")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"invproto: accuracy at step {STEPS} on invproto.data.MNISTTest" in result.stdout
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    evaluation = scores["evaluations"][-1]
    assert evaluation["dataset"] == "invproto.data.MNISTTest" and evaluation["step"] == STEPS
    assert scores["final"] == evaluation and evaluation["accuracy"] > 0.6


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(trained):
    runner, run, _ = trained
    checkpoint = run / "train" / "checkpoints" / f"model-{STEPS}.ckpt"
    result = runner("-p", str(runner.train_config(run)), "-c", str(checkpoint),
                    "--model_params/base_channels", "16")
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert str(checkpoint) in last_line and "base_channels" in last_line and "Traceback" not in result.stderr


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported(trained, tmp_path):
    runner, run, _ = trained
    corrupt = tmp_path / "model-1.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    result = runner("-p", str(runner.train_config(run)), "-c", str(corrupt))
    assert result.returncode == 1
    assert f"cannot load checkpoint {corrupt}" in result.stderr.strip().splitlines()[-1]


def train_losses(runner, name, seed):
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *QUICK, "--num_steps", "12", "--log_freq", "1",
                    "--seed", str(seed), "-n", name)
    assert result.returncode == 0, result.stderr[-3000:]
    return [float(r["loss"]) for r in read_metrics(runner.run_dir(name)) if r["phase"] == "train"]


@pytest.mark.slow
def test_same_seed_same_losses(tmp_path):
    runner = EdflowRunner(tmp_path)
    first, second = train_losses(runner, "seed_a", 3), train_losses(runner, "seed_b", 3)
    other = train_losses(runner, "seed_c", 4)
    assert len(first) >= 5
    assert first == pytest.approx(second, rel=1e-5)
    assert first != pytest.approx(other, rel=1e-3)


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_checkpoints(tmp_path):
    runner = EdflowRunner(tmp_path)
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *QUICK, "--num_steps", "50", "--ckpt_zero", "True",
                    "--optimizer/lr", "1e30", "-n", "nan")
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("invproto: the loss is not finite") and "--optimizer/lr" in last_line
    checkpoint = runner.run_dir("nan") / "train" / "checkpoints" / "model-0.ckpt"
    state = torch.load(checkpoint, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.dtype.is_floating_point)
