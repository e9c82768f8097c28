"""FID/KID under torchrun: every rank runs the callback, extracts the Inception features of its share of the
images, and rank 0 scores exactly what one process does; the cache decision is rank 0's.

The ranks are gloo processes forked with ``torch.multiprocessing`` (as in test_ddp.py and test_fid.py). The
callback test runs the real Inception network on the CPU (inherited from the parent through ``fork``) on six
Sprites images per set; the collective tests use a stand-in network that records what it was asked to extract.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing
import yaml
from conftest import SHARED_DATA, run_config
from test_ddp import TorchrunRunner, finish, free_port

from invproto import distributed
from invproto.callbacks import base as callback_base
from invproto.callbacks import fid as fid_callbacks
from invproto.data import SpritesValidation
from invproto.fid import FEATURE_DIM, FeatureStatistics, StatsKey, reference_statistics
from invproto.fid.sharding import extract_in_shards
from invproto.fid.statistics import image_batches, save_statistics

N = 6  # images per compared set
CONFIG = run_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                    dataset_params={"size": 16, "n_train": 10, "n_validation": N, "n_test": 4})
SCORES = ("fid_samples", "kid_samples", "kid_samples_std", "fid_floor")


def join_ranks(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.setup()


def run_ranks(main, world: int, out: Path, *args) -> list:
    """Run ``main(rank, world, port, out, *args)`` in ``world`` forked processes; what each pickled to ``out``."""
    torch.multiprocessing.start_processes(main, args=(world, free_port(), str(out), *args), nprocs=world,
                                          start_method="fork")
    return [pickle.loads((out / f"rank{rank}.pkl").read_bytes()) for rank in range(world)]


def generated_images() -> np.ndarray:
    """Six uint8 "samples": the validation images upside down and darkened."""
    real = np.stack([SpritesValidation(CONFIG)[i]["image"] for i in range(N)])
    return np.round((real[:, ::-1] + 1) * 127.5 * 0.7).astype(np.uint8)


class Outputs:
    """What edflow passes a callback as ``data_out``: the stored outputs under ``labels``."""

    def __init__(self, labels: dict):
        self.labels = labels


# --------------------------------------------------------------------------- the fid_samples callback


def _callback_rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One rank: ``fid_samples`` twice (reference and floor first computed, then cached) on the same outputs."""
    join_ranks(rank, world, port)
    os.environ["INVPROTO_FID_CACHE"] = str(Path(out, "cache"))
    run_root = Path(out, f"run{rank}")
    callback_base.current_run_root = lambda: run_root  # edflow's run directory of this rank
    images: list[int] = []
    fid_callbacks.inception().net.register_forward_hook(lambda module, inputs, output: images.append(len(output)))
    root = Path(out, f"eval{rank}", "7")
    root.mkdir(parents=True)
    data_in, data_out = SpritesValidation(CONFIG), Outputs({"sample": generated_images()})
    first = fid_callbacks.fid_samples(str(root), data_in, data_out, CONFIG, n_images=N)
    extracted_first, images[:] = sum(images), []
    second = fid_callbacks.fid_samples(str(root), data_in, data_out, CONFIG, n_images=N)
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(
        {"first": first, "second": second, "extracted": (extracted_first, sum(images))}))


@pytest.fixture(scope="module")
def single_process_scores(tmp_path_factory):
    """``fid_samples``'s metrics in this (one) process, with its own cache; builds the network the ranks inherit."""
    cache = tmp_path_factory.mktemp("single_cache")
    previous = os.environ.get("INVPROTO_FID_CACHE")
    os.environ["INVPROTO_FID_CACHE"] = str(cache)
    try:
        root = tmp_path_factory.mktemp("single") / "7"
        root.mkdir()
        return fid_callbacks.fid_samples.__wrapped__(str(root), SpritesValidation(CONFIG),
                                                     Outputs({"sample": generated_images()}), CONFIG, n_images=N)
    finally:
        if previous is None:
            del os.environ["INVPROTO_FID_CACHE"]
        else:
            os.environ["INVPROTO_FID_CACHE"] = previous


@pytest.mark.slow
def test_two_ranks_share_the_inception_work_and_rank_0_scores_like_one_process(single_process_scores, tmp_path):
    assert set(single_process_scores) == set(SCORES) and single_process_scores["fid_samples"] > 0
    ranks = run_ranks(_callback_rank_main, 2, tmp_path)

    # first call: 3 of the 6 reference, generated and floor images each; then the statistics are cached
    assert [rank["extracted"] for rank in ranks] == [(9, 3), (9, 3)]
    for call in ("first", "second"):
        scalars = ranks[0][call]["scalars"]
        assert set(scalars) == set(SCORES)
        for name in SCORES:
            assert scalars[name] == pytest.approx(single_process_scores[name], rel=1e-4, abs=1e-7), name
        assert ranks[1][call] == {"scalars": {}}

    # rank 0 alone records the scores and writes the cache; the other rank writes nothing of its own
    scores = yaml.safe_load((tmp_path / "run0" / "results" / "scores.yaml").read_text())
    assert scores["final"]["step"] == 7 and scores["final"]["fid_samples"] == ranks[0]["second"]["scalars"][
        "fid_samples"]
    assert not (tmp_path / "run1").exists()
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".npz", ".npz"]


# --------------------------------------------------------------------------- collectives with a stand-in network


class RecordingNetwork:
    """Stands in for ``InceptionFeatures``: image i's features are its pixel mean plus the column index; records
    the number of images of every ``extract`` and, like the real one, refuses to extract nothing."""

    def __init__(self):
        self.extracted: list[int] = []

    def extract(self, batches, total=None, progress=True) -> np.ndarray:
        means = np.concatenate([np.asarray(batch, dtype=np.float32).reshape(len(batch), -1).mean(1)
                                for batch in batches])
        if not len(means):
            raise ValueError("no images to extract features from")
        self.extracted.append(len(means))
        return means[:, None] + np.arange(FEATURE_DIM, dtype=np.float32)


def images(n: int) -> np.ndarray:
    return np.linspace(-1, 1, n * 4, dtype=np.float32).reshape(n, 2, 2, 1) * np.arange(1, n + 1)[:, None, None, None]


def _collectives_rank_main(rank: int, world: int, port: int, out: str) -> None:
    join_ranks(rank, world, port)
    network, result = RecordingNetwork(), {}
    result["two_images"] = extract_in_shards(network, 2, lambda start, stop: image_batches(images(2), stop, 1, start))
    result["two_images_extracted"], network.extracted = network.extracted, []
    # A: only rank 0's cache holds the statistics: no rank extracts
    result["hit"] = reference_statistics(images(N), "fake", "test", features=network, progress=False,
                                         cache_dir=Path(out, f"hit{rank}"))
    result["hit_extracted"], network.extracted = network.extracted, []
    # B: every cache but rank 0's holds them: every rank extracts its share, rank 0 writes its cache
    result["miss"] = reference_statistics(images(N), "fake", "test", features=network, progress=False,
                                          cache_dir=Path(out, f"miss{rank}"))
    result["miss_extracted"] = network.extracted
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


@pytest.mark.slow
def test_ranks_extract_their_shares_and_follow_rank_0s_cache_decision(tmp_path):
    world, key = 3, StatsKey("fake", "test", N)
    stored = FeatureStatistics.of(RecordingNetwork().extract([images(N)]))
    save_statistics(tmp_path / "hit0" / key.filename, key, stored)
    for rank in (1, 2):
        (tmp_path / f"hit{rank}").mkdir()
        save_statistics(tmp_path / f"miss{rank}" / key.filename, key, stored)
    written = {rank: (tmp_path / f"miss{rank}" / key.filename).stat().st_mtime_ns for rank in (1, 2)}

    ranks = run_ranks(_collectives_rank_main, world, tmp_path)

    # two images over three ranks: one each for ranks 0 and 1, none (and no network call) for rank 2
    np.testing.assert_array_equal(ranks[0]["two_images"], RecordingNetwork().extract([images(2)]))
    assert [rank["two_images_extracted"] for rank in ranks] == [[1], [1], []]
    assert ranks[1]["two_images"] is None and ranks[2]["two_images"] is None

    assert [rank["hit_extracted"] for rank in ranks] == [[], [], []]
    np.testing.assert_array_equal(ranks[0]["hit"].features, stored.features)
    assert ranks[1]["hit"] is None and ranks[2]["hit"] is None
    assert [list((tmp_path / f"hit{rank}").iterdir()) for rank in (1, 2)] == [[], []]

    assert [rank["miss_extracted"] for rank in ranks] == [[2], [2], [2]]
    np.testing.assert_array_equal(ranks[0]["miss"].features, stored.features)
    assert ranks[1]["miss"] is None and ranks[2]["miss"] is None
    with np.load(tmp_path / "miss0" / key.filename) as archive:
        np.testing.assert_array_equal(archive["features"], stored.features)
    assert {rank: (tmp_path / f"miss{rank}" / key.filename).stat().st_mtime_ns for rank in (1, 2)} == written


def test_one_process_extracts_everything_itself():
    network = RecordingNetwork()
    features = extract_in_shards(network, 5, lambda start, stop: image_batches(images(5), stop, 2, start))
    np.testing.assert_array_equal(features, RecordingNetwork().extract([images(5)]))
    assert network.extracted == [5]


# --------------------------------------------------------------------------- the edflow CLI under torchrun

E2E_STEPS, E2E_IMAGES = 2, 6
TINY_AE = ["-b", "configs/mnist_ae_cpu.yaml", "-t", "--model_params/base_channels", "4",
           "--loss/params/disc_channels", "4", "--loss/params/disc_start", "1", "--batch_size", "16",
           "--data/validation_size", "8", "--log_freq", "2", "--optimizer/warmup_steps", "0",
           "--num_steps", str(E2E_STEPS),
           "--eval_pipeline/callback_kwargs/fid_reconstruction/n_images", str(E2E_IMAGES),
           "--eval_pipeline/callback_kwargs/fid_samples/n_images", str(E2E_IMAGES)]
AE_SCORES = ("fid_reconstruction", "kid_reconstruction", "kid_reconstruction_std", *SCORES, "kl", "l1")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_torchrun_training_scores_fid_like_a_one_process_evaluation(tmp_path):
    """Two processes train a tiny autoencoder and score FID/KID of 6 reconstructions and samples at the end; a
    one-process ``edflow -p`` of the same checkpoint, with a fresh FID cache, records the same scores."""
    runner = TorchrunRunner(tmp_path)
    runner.env["INVPROTO_FID_CACHE"] = str(tmp_path / "cache_two")
    output = finish(runner.torchrun(2, *TINY_AE, "-n", "two"))
    run = runner.run_dir("two")
    for callback in ("fid_reconstruction", "fid_samples"):
        assert output.count(f"invproto: {callback} at step {E2E_STEPS} on") == 1, output[-3000:]
    # rank 0's progress bars (the only ones): 3 of the 6 images of each set (reference, reconstructions,
    # samples, floor); rank 1 extracted the other 3
    assert re.findall(r"inception features: +0%.*? 0/(\d+) ", output) == ["3"] * 4, output[-3000:]
    assert len(list((tmp_path / "cache_two").glob("*.npz"))) == 2  # validation reference and training floor
    assert not list(runner.tmp.glob("invproto-rank*")), "the other rank's throwaway directory is left over"
    training = yaml.safe_load((run / "results" / "scores.yaml").read_text())["per_epoch"]
    assert [entry["step"] for entry in training] == [E2E_STEPS]

    runner.env["INVPROTO_FID_CACHE"] = str(tmp_path / "cache_one")
    result, scores = runner.evaluate(run)
    assert re.findall(r"inception features: +0%.*? 0/(\d+) ", result.stderr) == ["6"] * 4  # one process: all
    evaluation = scores["evaluations"][-1]
    assert evaluation["step"] == E2E_STEPS
    for name in AE_SCORES:  # same checkpoint, seeded samples, same images: the same scores to float round-off
        assert evaluation[name] == pytest.approx(training[0][name], rel=1e-4, abs=1e-7), name
    assert training[0]["fid_samples"] > 0 and training[0]["kid_reconstruction_std"] == 0
