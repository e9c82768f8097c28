"""FID/KID callbacks: a few training steps of configs/mnist_ae_cpu.yaml on real MNIST through the real edflow
CLI, and the FID floor's training images.

FID runs on 64 validation images (Inception on a CPU does about 8 images/s);
the reference statistics go to a scratch cache (``INVPROTO_FID_CACHE``).
"""

import math

import numpy as np
import pytest
import yaml
from edflow_runner import SHARED_DATA, EdflowRunner

from invproto.callbacks import fid as fid_callbacks
from invproto.data import SpritesTrain
from invproto.fid import StatsKey

STEPS = 6
N_IMAGES = 64
TINY = ["--model_params/base_channels", "4", "--loss/params/disc_channels", "4", "--loss/params/disc_start", "3",
        "--batch_size", "16", "--data/validation_size", str(N_IMAGES), "--log_freq", "3",
        "--optimizer/warmup_steps", "0",
        "--eval_pipeline/callback_kwargs/fid_reconstruction/n_images", str(N_IMAGES),
        "--eval_pipeline/callback_kwargs/fid_samples/n_images", str(N_IMAGES)]
SCORES = ("fid_reconstruction", "kid_reconstruction", "kid_reconstruction_std",
          "fid_samples", "kid_samples", "kid_samples_std", "fid_floor")
needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
pytestmark = pytest.mark.slow


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


@needs_mnist
def test_training_records_fid_kid_floor_and_reconstruction_metrics(trained):
    _, run, _, result = trained
    final = scores(run)["final"]
    assert final["step"] == STEPS and final["dataset"] == "invproto.data.MNISTValidation"
    for name in SCORES:
        assert math.isfinite(final[name]), name
    for name in ("fid_reconstruction", "fid_samples", "fid_floor", "kid_samples"):
        assert final[name] > 0, name
    assert final["kid_reconstruction_std"] == final["kid_samples_std"] == 0  # 64 images: one KID subset
    # untrained samples are far from the data; 64 real images already score a large FID against 64 others
    assert 0 < final["fid_floor"] < final["fid_samples"]
    for callback in ("fid_reconstruction", "fid_samples"):
        assert f"invproto: {callback} at step {STEPS}" in result.stdout
    assert final["kl"] > 0 and 0 < final["l1"] < 2  # images in [-1, 1]
    assert scores(run)["per_epoch"] == [final]


@needs_mnist
def test_evaluation_recomputes_scores_with_cached_reference_statistics(trained):
    runner, run, cache, _ = trained
    files = sorted(cache.glob("*.npz"), key=lambda p: p.name)
    assert [("MNISTTrain" in p.name, "MNISTValidation" in p.name) for p in files] == [(True, False), (False, True)]
    assert "-validation_" in files[1].name and f"-n{N_IMAGES}-" in files[1].name
    assert "-train_" in files[0].name and f"_last-n{N_IMAGES}-" in files[0].name  # the floor: last 64 of train
    mtimes = [p.stat().st_mtime_ns for p in files]

    result = runner("-p", str(runner.train_config(run)))
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = scores(run)["evaluations"][-1]
    assert evaluation["step"] == STEPS
    training = scores(run)["per_epoch"][-1]
    for name in SCORES:  # same checkpoint, same seeded samples, same reference, seeded KID subsets: same scores
        assert evaluation[name] == pytest.approx(training[name], rel=1e-3, abs=1e-9), name
    assert sorted(cache.glob("*.npz"), key=lambda p: p.name) == files
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_floor_statistics_are_the_last_training_images_and_cached(make_config, monkeypatch, tmp_path):
    monkeypatch.setenv("INVPROTO_FID_CACHE", str(tmp_path))
    config = make_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                         dataset_params={"size": 16, "n_train": 10, "n_validation": 4, "n_test": 4})
    stats = fid_callbacks.training_split_statistics(config, 3)
    expected = fid_callbacks.inception()(np.stack([SpritesTrain(config)[i]["image"] for i in (7, 8, 9)]))
    np.testing.assert_allclose(stats.features, expected.cpu().numpy(), rtol=1e-4, atol=1e-4)

    key = StatsKey("invproto.data.SpritesTrain", f"{fid_callbacks.split_description(SpritesTrain, config)}-last", 3)
    assert [p.name for p in tmp_path.iterdir()] == [key.filename]
    with pytest.raises(ValueError, match="needs 11 training images"):
        fid_callbacks.training_split_statistics(config, 11)
    monkeypatch.setattr(SpritesTrain, "__init__", lambda *args: pytest.fail("built the split on a cache hit"))
    np.testing.assert_array_equal(fid_callbacks.training_split_statistics(config, 3).features, stats.features)
