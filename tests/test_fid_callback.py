"""FID callbacks through the real edflow CLI: a few training steps of configs/mnist_ae_cpu.yaml on real MNIST.

FID runs on 64 validation images (Inception on a CPU does about 8 images/s);
the reference statistics go to a scratch cache (``INVPROTO_FID_CACHE``).
"""

import math

import pytest
import yaml

from edflow_runner import SHARED_DATA, EdflowRunner

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")

STEPS = 6
N_IMAGES = 64
TINY = ["--model_params/base_channels", "4", "--loss/params/disc_channels", "4", "--loss/params/disc_start", "3",
        "--batch_size", "16", "--data/validation_size", str(N_IMAGES), "--log_freq", "3",
        "--optimizer/warmup_steps", "0",
        "--eval_pipeline/callback_kwargs/fid_reconstruction/n_images", str(N_IMAGES),
        "--eval_pipeline/callback_kwargs/fid_samples/n_images", str(N_IMAGES)]
FIDS = ("fid_reconstruction", "fid_samples")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runner = EdflowRunner(tmp_path_factory.mktemp("ae"))
    cache = runner.workdir / "fid_cache"
    runner.env["INVPROTO_FID_CACHE"] = str(cache)
    result = runner("-b", "configs/mnist_ae_cpu.yaml", "-t", *TINY, "--num_steps", str(STEPS), "-n", "ae")
    assert result.returncode == 0, result.stderr[-3000:]
    return runner, runner.run_dir("ae"), cache, result


def scores(run):
    return yaml.safe_load((run / "results" / "scores.yaml").read_text())


def test_training_records_fids_and_reconstruction_metrics(trained):
    _, run, _, result = trained
    final = scores(run)["final"]
    assert final["step"] == STEPS and final["dataset"] == "invproto.data.MNISTValidation"
    for name in FIDS:
        assert math.isfinite(final[name]) and final[name] > 0, name
        assert f"invproto: {name} at step {STEPS}" in result.stdout
    assert final["kl"] > 0 and 0 < final["l1"] < 2  # images in [-1, 1]
    assert scores(run)["per_epoch"] == [final]


def test_evaluation_recomputes_fids_with_cached_reference_statistics(trained):
    runner, run, cache, _ = trained
    [statistics] = cache.glob("*.npz")  # one split, one n: one file
    assert "MNISTValidation" in statistics.name and f"-n{N_IMAGES}-" in statistics.name
    mtime = statistics.stat().st_mtime_ns

    result = runner("-p", str(runner.train_config(run)))
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = scores(run)["evaluations"][-1]
    assert evaluation["step"] == STEPS
    training = scores(run)["per_epoch"][-1]
    for name in FIDS:  # same checkpoint, same seeded samples, same reference: same FID
        assert evaluation[name] == pytest.approx(training[name], rel=1e-3), name
    assert list(cache.glob("*.npz")) == [statistics] and statistics.stat().st_mtime_ns == mtime
